//! Apply engine, checkpoints and PITR (see issue: applier). Not yet implemented.
