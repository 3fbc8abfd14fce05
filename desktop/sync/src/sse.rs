//! Server-sent events from a byte stream: `event:` and `data:` fields, a
//! blank line ends an event, comments (`:heartbeat`) and other fields are
//! skipped. Bytes are split at line ends before they are decoded, so a
//! character a chunk boundary cuts in two arrives whole (a reply's text is
//! any language). An event or a line larger than the bound is an error, not
//! unbounded memory.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the event named none.
    pub name: String,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event was larger than {0} bytes")]
pub struct TooLarge(pub usize);

pub struct Parser {
    max: usize,
    /// Bytes after the last line end.
    pending: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Events (and lines) of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            pending: Vec::new(),
            name: None,
            data: None,
        }
    }

    /// The events `chunk` completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            if self.pending.len() > self.max {
                return Err(TooLarge(self.max));
            }
            let line = std::mem::take(&mut self.pending);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if let Some(event) = self.line(&String::from_utf8_lossy(line))? {
                events.push(event);
            }
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > self.max {
            return Err(TooLarge(self.max));
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Result<Option<SseEvent>, TooLarge> {
        if line.is_empty() {
            let name = self.name.take();
            return Ok(self.data.take().map(|data| SseEvent {
                name: name.unwrap_or_else(|| "message".into()),
                data,
            }));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => {
                let data = match self.data.as_mut() {
                    // Several data lines join with a line break (the spec).
                    Some(data) => {
                        data.push('\n');
                        data
                    }
                    None => self.data.insert(String::new()),
                };
                data.push_str(value);
                if data.len() > self.max {
                    return Err(TooLarge(self.max));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(bytes: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        Parser::new(64 * 1024).push(bytes)
    }

    #[test]
    fn events_as_the_proxy_sends_them() {
        let stream = b"event: ready\ndata: {}\n\n:heartbeat\n\nevent: reply\r\ndata: {\"delta\":\"caf\xc3\xa9\"}\r\n\r\ndata: a\ndata: b\n\n";
        let events = all(stream).unwrap_or_default();
        let shown: Vec<_> = events
            .iter()
            .map(|e| (e.name.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("ready", "{}"),
                ("reply", "{\"delta\":\"café\"}"),
                ("message", "a\nb")
            ]
        );
    }

    #[test]
    fn a_character_split_across_chunks_stays_whole() {
        let stream = "event: reply\ndata: {\"delta\":\"😀 é\"}\n\n".as_bytes();
        for cut in 0..stream.len() {
            let mut parser = Parser::new(1024);
            let mut events = parser.push(&stream[..cut]).unwrap_or_default();
            events.extend(parser.push(&stream[cut..]).unwrap_or_default());
            assert_eq!(events.len(), 1, "cut at {cut}");
            assert_eq!(events[0].data, "{\"delta\":\"😀 é\"}", "cut at {cut}");
        }
    }

    #[test]
    fn oversized_events_and_lines_are_errors() {
        let mut parser = Parser::new(16);
        assert_eq!(
            parser.push(b"data: 0123456789abcdefXYZ\n"),
            Err(TooLarge(16))
        );
        let mut parser = Parser::new(16);
        assert_eq!(parser.push(&[b'x'; 17]), Err(TooLarge(16)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary bytes in arbitrary chunks: never a panic, and the
        /// chunking never changes what comes out.
        #[test]
        fn any_bytes_in_any_chunks(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '),
                    Just(b'e'), Just(b'd'), any::<u8>(),
                ],
                0..1000,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let whole = all(&bytes);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut parser = Parser::new(64 * 1024);
            let mut pieces = Vec::new();
            let mut start = 0;
            for point in points.into_iter().chain([bytes.len()]) {
                match parser.push(&bytes[start..point]) {
                    Ok(events) => pieces.extend(events),
                    Err(e) => {
                        prop_assert!(whole.is_err(), "{e}");
                        return Ok(());
                    }
                }
                start = point;
            }
            prop_assert_eq!(whole.unwrap_or_default(), pieces);
        }
    }
}
