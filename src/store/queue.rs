//! The durable outbound delivery queue; written on the `delivery` branch.

pub(crate) fn migrate(_: &rusqlite::Connection) -> rusqlite::Result<()> {
    Ok(())
}
