//! Per-connection state. (Being written.)
