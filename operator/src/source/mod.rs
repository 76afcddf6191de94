//! Sources of objects: each turns some outside state into a [`ClusterSnapshot`](crate::snapshot::ClusterSnapshot).
//!
//! - [`files`]: a directory of manifests (the `render` and `standalone` commands). Stateless: it
//!   can be re-run on every change of the directory and yields the same snapshot for the same
//!   files.
//! - [`incremental`]: the same directory kept parsed per file; a reload re-reads only files
//!   that changed and returns the change to the snapshot (`sluice standalone`).
//! - [`kube`]: watches over the Kubernetes API (`sluice run`), applied event by event to one
//!   snapshot ([`watched`]).
//!
//! Sources own I/O and decoding; they must not judge objects (that is `dag`'s job): an
//! IngressRoute with a negative weight loads fine and gets an `invalid` status later.

pub mod files;
pub mod incremental;
pub mod kube;
pub mod lenient;
pub mod nesting;
pub mod secret_grace;
pub mod secret_reach;
pub mod traefik;
pub mod watched;

pub use files::{DocRef, FileDelta, LoadError, LoadReport, LoadWarning, load_dir, load_sources};
pub use incremental::{IncrementalLoader, Reload};
