//! ActivityStreams documents, WebFinger, keys and HTTP signatures.

pub mod urls;
