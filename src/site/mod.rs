//! Pages, taxonomies and feeds assembled from documents.

pub mod interactions;
