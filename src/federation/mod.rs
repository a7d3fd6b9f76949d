//! ActivityStreams documents, WebFinger, keys and HTTP signatures.

pub mod keys;
pub mod urls;
