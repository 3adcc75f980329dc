//! Resource detection. (Being written.)
