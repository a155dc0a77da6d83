//! The applier: turns a journal into a replica tree, contained beneath its root, crash-safe,
//! and able to restore any point in time.

pub mod apply;
pub mod fs;
pub mod model;
pub mod net;
pub mod pitr;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod tree;
