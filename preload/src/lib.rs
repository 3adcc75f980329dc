//! liblumigo_preload.so (being written).
