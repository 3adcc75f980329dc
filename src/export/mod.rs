//! The export pipeline. (Being written.)
