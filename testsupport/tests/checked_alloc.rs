//! The checking allocator that the plumbing's and proxy's tests run under: ordinary
//! allocation works through it, and freeing a buffer another allocator made (what the
//! `ipset` crate did with libipset's strings, issue 24) kills the process with a message.

use std::process::Command;

#[global_allocator]
static CHECKED: testsupport::Checked = testsupport::Checked;

const CHILD: &str = "ZRING_CHECKED_ALLOC_CHILD";

#[test]
fn ordinary_allocation_works_through_the_checker() {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000 {
        v.push(i);
    }
    v.shrink_to(10);
    let s: Vec<String> = (0..1000).map(|i| format!("{i:0>200}")).collect();
    assert_eq!(s[999].len(), 200);
    #[repr(align(256))]
    struct Wide([u8; 512]);
    let w = Box::new(Wide([7; 512]));
    assert_eq!(std::ptr::from_ref(&*w) as usize % 256, 0);
    assert_eq!(w.0[511], 7);
    assert_eq!(v.iter().sum::<u64>(), 4_999_950_000);
}

#[test]
fn freeing_a_foreign_buffer_aborts() {
    if std::env::var_os(CHILD).is_some() {
        testsupport::free_foreign_buffer();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "freeing_a_foreign_buffer_aborts", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the foreign free went unnoticed");
    assert!(
        stderr.contains("did not allocate"),
        "no checker message in: {stderr}"
    );
}
