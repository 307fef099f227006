//! A bounds-checked little-endian cursor over the bytes of a GGUF file.
//!
//! Every read checks the bytes left first and fails with the file name, the byte
//! offset and what was being read; nothing here can panic or read out of bounds.

use crate::error::Error;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], file: &'a str) -> Cursor<'a> {
        Cursor { buf, pos: 0, file }
    }

    pub fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// A format error at byte `offset` of this file.
    pub fn error_at(&self, offset: u64, what: impl Into<String>) -> Error {
        Error::Format {
            file: self.file.to_string(),
            offset,
            what: what.into(),
        }
    }

    /// Takes the next `n` bytes, or fails saying what needed them.
    pub fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(self.error_at(
                self.pos(),
                format!(
                    "file truncated: {what} needs {n} bytes, only {} left (file has {} bytes; incomplete download?)",
                    self.remaining(),
                    self.buf.len()
                ),
            ));
        }
        let start = self.pos;
        // `n <= remaining`, so it fits in usize and the slice is in bounds.
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 length, then that many bytes of UTF-8.
    pub fn string(&mut self, what: &str, max_len: u64) -> Result<String, Error> {
        let at = self.pos();
        let len = self.u64(what)?;
        if len > max_len {
            return Err(self.error_at(
                at,
                format!("{what}: string length {len} exceeds the limit of {max_len} bytes"),
            ));
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error_at(at + 8, format!("{what}: invalid UTF-8 ({e})"))),
        }
    }
}
