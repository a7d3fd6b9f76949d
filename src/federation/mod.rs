//! ActivityStreams documents, WebFinger, keys and HTTP signatures.

pub mod check;
pub mod documents;
pub mod hostrules;
pub mod keys;
pub mod signature;
pub mod urls;
