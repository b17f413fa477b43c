//! The wall clock, in Unix seconds. Read at the edge of a flow and passed down: the domain takes
//! time as a parameter.

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
