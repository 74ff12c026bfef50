use super::*;
use crate::peer::fixture::fixture;
use crate::peer::goals::{added_ratio, goals};

#[test]
fn table_has_all_columns_and_ratio() {
    let md = markdown(&fixture());
    assert!(
        md.contains("| metric | direct | ztunnel | zring | zring/ztunnel | better |"),
        "{md}"
    );
    assert!(
        md.contains("| Gb/s | 36.0 | 7.70 | 9.50 | 1.23× | zring |"),
        "{md}"
    );
    assert!(
        md.contains("| connections/s | 15000 | 5800 | 2500 | 0.43× | ztunnel |"),
        "{md}"
    );
    assert!(
        md.contains("host CPU busy during the phase (median): direct 50.0%"),
        "{md}"
    );
    assert!(md.contains("`zring-loadgen peer`"), "{md}");
}

#[test]
fn cells_show_median_and_range() {
    let s = Stat::of(&[1.0, 2.0, 4.0]);
    assert_eq!(cell(s), "2.00 (1.00–4.00)");
    assert_eq!(cell(Stat::of(&[250.0])), "250");
    assert_eq!(cell(None), "-");
    assert_eq!(num(0.0531), "0.053");
    assert_eq!(better(0.5, Better::Lower), "zring");
    assert_eq!(better(0.5, Better::Higher), "ztunnel");
    assert_eq!(better(1.01, Better::Higher), "even");
}

#[test]
fn goals_are_marked_from_the_ratios() {
    let r = fixture();
    let g = goals(&r);
    assert_eq!(g.len(), 9);
    // bulk 9.5/7.7 = 1.23 and 10/8 = 1.25: met; CPU 1.0/1.3 = 0.77 both: met.
    assert_eq!(g[0].met, Some(true), "{:?}", g[0]);
    assert_eq!(g[1].met, Some(true));
    // added p50: (49-20)/(78-20) = 0.5: met.
    let closed = r.figure("echo_closed").unwrap();
    assert!((added_ratio(closed, "p50_us").unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(g[2].met, Some(true));
    // added p99 at 10k: (150-50)/(219-50) = 0.59: not met.
    assert_eq!(g[3].met, Some(false));
    assert_eq!(g[5].met, Some(true), "sweep 2×");
    let mut none = fixture();
    let sweep = none.figures.iter_mut().find(|f| f.key == "sweep").unwrap();
    for s in sweep.samples.values_mut().flatten() {
        s.values.insert("max_rate_p99_1ms".into(), 0.0);
    }
    let g5 = &goals(&none)[5];
    assert_eq!(g5.met, Some(false));
    assert!(g5.measured.contains("neither"), "{}", g5.measured);
    assert_eq!(g[6].met, Some(false), "churn behind, with failures");
    assert!(
        g[6].measured.contains("9 zring failures"),
        "{}",
        g[6].measured
    );
    assert_eq!(g[7].met, Some(false), "RSS");
    assert!(g[7].measured.contains("570%"), "{}", g[7].measured);
    assert_eq!(g[8].met, None);
    let md = markdown(&r);
    assert!(md.contains("**not met**") && md.contains("| met |") && md.contains("not measured"));
}

#[test]
fn failures_section_lists_reasons() {
    let mut r = fixture();
    let f = r.figures.iter_mut().find(|f| f.key == "churn16").unwrap();
    f.samples.get_mut("zring").unwrap()[0]
        .reason("SOCKS5 CONNECT refused: connection refused (code 5)");
    let md = markdown(&r);
    assert!(
        md.contains("- same churn16 via zring: 9 failed: SOCKS5 CONNECT refused"),
        "{md}"
    );
    let mut ok = fixture();
    ok.figures.retain(|f| f.key != "churn16");
    assert!(markdown(&ok).contains("none: every operation succeeded"));
}
