//! The HTTP face of dispatch (in progress).
