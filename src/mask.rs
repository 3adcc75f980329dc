//! Secret masking. (Being written.)
