//! vigil enforce: the inline proxy, subject extraction, the decision table and forward-auth.
//!
//! Not built yet: this crate is the home of the enforcement issue (see ARCHITECTURE.md).
#![forbid(unsafe_code)]
