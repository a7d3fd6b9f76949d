//! ActivityStreams documents, WebFinger, keys and HTTP signatures.

pub mod fetch;
pub mod keys;
pub mod signature;
pub mod urls;
