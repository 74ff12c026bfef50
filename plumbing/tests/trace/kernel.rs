//! Asking the kernel (`ip route get`) what the model answered.

use plumbing::trace::{self, Answer, Lookup, Trace};

/// `ip route get` for `l` in its netns: the kernel's answer, first line.
pub fn kernel(l: &Lookup) -> String {
    let mut args = vec![
        "ip".to_string(),
        "route".into(),
        "get".into(),
        l.dst.to_string(),
    ];
    if let Some(s) = l.src {
        args.extend(["from".into(), s.to_string()]);
    }
    if let Some(i) = &l.iif {
        args.extend(["iif".into(), i.clone()]);
    }
    args.extend(["mark".into(), format!("{:#x}", l.mark)]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ns = l.netns.as_deref().unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(&argv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    format!("{} {err}", text.lines().next().unwrap_or(""))
        .trim()
        .to_string()
}

/// Whether the kernel's `ip route get` line says what the model answered.
pub fn agrees(a: &Answer, k: &str) -> bool {
    let words: Vec<&str> = k.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let table = |t: u32| match (t, after("table")) {
        (254, None) | (254, Some("main")) => true,
        (255, Some("local")) => true,
        (t, Some(got)) => got == t.to_string(),
        _ => false,
    };
    match a {
        Answer::Local { table: t } => words.first() == Some(&"local") && table(*t),
        Answer::Unicast {
            table: t,
            dev,
            gateway,
        } => {
            after("dev") == Some(dev.as_str())
                && after("via") == gateway.map(|g| g.to_string()).as_deref()
                && table(*t)
        }
        Answer::Unreachable => k.contains("unreachable"),
    }
}

/// Every lookup of every hop of `t`, checked against the kernel; returns how many.
pub fn check_with_kernel(t: &Trace) -> usize {
    let mut n = 0;
    for leg in &t.legs {
        for p in &leg.packets {
            for s in &p.steps {
                let k = kernel(&s.lookup);
                assert!(
                    agrees(&s.lookup.answer, &k),
                    "{} / {} at {}: model {:?}, kernel `{k}`\n{}",
                    leg.name,
                    p.what,
                    s.host,
                    s.lookup,
                    trace::render_text(t)
                );
                n += 1;
            }
        }
    }
    n
}
