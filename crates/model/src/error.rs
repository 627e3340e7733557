/// The small set of error kinds that every module maps its errors onto.
/// Only the HTTP/gRPC layer turns a kind into a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or carries invalid data (400).
    BadData,
    /// The request body is larger than allowed (413).
    TooLarge,
    /// The content type or encoding is not supported (415).
    Unsupported,
    /// A per-tenant rate or size limit rejected the request (429).
    Limited,
    /// A resource needed to answer is temporarily unavailable (503).
    Unavailable,
    /// A bug or an I/O failure on our side (500).
    Internal,
}
