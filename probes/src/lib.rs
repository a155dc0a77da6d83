//! eBPF probes and loader (see issue: capture). Not yet implemented.
