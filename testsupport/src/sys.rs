//! The only module with `unsafe`: [`Checked`], a global allocator for test binaries that
//! refuses to free what it did not allocate.
//!
//! A block of `size` bytes at alignment `align` is allocated by [`System`] with a header of
//! `pad = max(align, 16)` bytes in front; the 16 bytes just before the caller's pointer
//! hold the size and a tag derived from the pointer. `dealloc` and `realloc` check both
//! before touching the block: memory from C's `malloc` (the libipset bug of issue 24), a
//! double free, or a wrong `Layout` size fails loudly instead of corrupting the heap.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

const TAG: usize = 0x5a72_696e_6721_a110_u64 as usize;
const HEADER: usize = 16;

/// A checking allocator: `#[global_allocator] static A: Checked = Checked;`.
pub struct Checked;

fn pad(layout: Layout) -> usize {
    layout.align().max(HEADER)
}

fn outer(layout: Layout) -> Option<Layout> {
    Layout::from_size_align(layout.size().checked_add(pad(layout))?, pad(layout)).ok()
}

fn tag(user: *mut u8) -> usize {
    TAG ^ user as usize
}

/// Says what went wrong and aborts (a panic could allocate, and unwinding out of an
/// allocator is undefined).
fn fail(what: &str) -> ! {
    let mut e = std::io::stderr();
    let _ = e.write_all(b"testsupport::Checked allocator: ");
    let _ = e.write_all(what.as_bytes());
    let _ = e.write_all(b"\n");
    std::process::abort()
}

/// Writes the header in front of `user`.
///
/// SAFETY (caller): `user` is `HEADER` or more bytes into a block this allocator owns.
unsafe fn stamp(user: *mut u8, size: usize) {
    // SAFETY: the header lies inside the block, 16-byte aligned (pad ≥ 16 and a multiple
    // of it), so both words are aligned and owned.
    unsafe {
        user.sub(HEADER).cast::<usize>().write(size);
        user.sub(HEADER / 2).cast::<usize>().write(tag(user));
    }
}

/// Checks the header in front of `user` against `layout`; returns the block's start.
///
/// SAFETY (caller): `user` was handed to Rust as a heap pointer; reading the 16 bytes
/// before it is what any malloc-family allocator's free does too.
unsafe fn verify(user: *mut u8, layout: Layout) -> *mut u8 {
    // SAFETY: see the caller contract; unaligned reads, as a foreign pointer may be only
    // 8-byte aligned.
    let (size, t) = unsafe {
        (
            user.sub(HEADER).cast::<usize>().read_unaligned(),
            user.sub(HEADER / 2).cast::<usize>().read_unaligned(),
        )
    };
    if t != tag(user) {
        fail("freeing memory this allocator did not allocate (C's malloc? a double free?)");
    }
    if size != layout.size() {
        fail("freeing with a Layout whose size differs from the allocation's");
    }
    // SAFETY: the tag says `user` is `pad` bytes into one of our blocks.
    unsafe {
        user.sub(HEADER / 2).cast::<usize>().write(0);
        user.sub(pad(layout))
    }
}

// SAFETY: every block comes from System with a valid Layout and goes back to it with the
// same Layout (recomputed from the caller's, which `verify` checks against the header).
unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(o) = outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `o` has a non-zero size (pad ≥ 16).
        let base = unsafe { System.alloc(o) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `pad` < o.size(), and the header fits in front of it.
        unsafe {
            let user = base.add(pad(layout));
            stamp(user, layout.size());
            user
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` was returned by this allocator (checked).
        unsafe {
            let base = verify(ptr, layout);
            System.dealloc(base, outer(layout).unwrap_or_else(|| fail("bad layout")));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let o = outer(layout).unwrap_or_else(|| fail("bad layout"));
        let Some(new_outer) = new_size.checked_add(pad(layout)) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `ptr` is ours (checked); System.realloc keeps the header at the front.
        unsafe {
            let base = verify(ptr, layout);
            let moved = System.realloc(base, o, new_outer);
            if moved.is_null() {
                stamp(ptr, layout.size());
                return moved;
            }
            let user = moved.add(pad(layout));
            stamp(user, new_size);
            user
        }
    }
}

/// Does what the `ipset` crate did: frees, as a Rust `String`, a buffer that another
/// allocator made. Only for the self-test that proves [`Checked`] catches it.
#[doc(hidden)]
pub fn free_foreign_buffer() {
    let layout = Layout::from_size_align(32, 8).unwrap_or_else(|_| fail("layout"));
    // SAFETY: a plain System allocation (standing in for C's malloc), written before use.
    let s = unsafe {
        let p = System.alloc(layout);
        if p.is_null() {
            fail("out of memory");
        }
        p.write_bytes(b'x', 32);
        String::from_raw_parts(p, 32, 32)
    };
    drop(s);
}
