//! zring-plumbing: the kernel objects of ambient capture (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
