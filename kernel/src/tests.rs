//! Cross-cutting in-kernel tests live next to their code; this module holds none yet.
