//! HTTP/1.x: incremental parsing of both directions of a connection into
//! exchanges, and their span attributes. (Being written.)
