//! Orchestration: load what a decision needs from the store, call the domain, persist the
//! result, return what happened.
