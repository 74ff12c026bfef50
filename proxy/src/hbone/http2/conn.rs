//! Either end of an HTTP/2 connection, as HBONE needs it: I/O-free. The server
//! ([`Endpoint::server`]) accepts CONNECT streams; the client ([`Endpoint::client`]) opens
//! them ([`Endpoint::open_stream`]) and is told their responses.
//!
//! Plaintext goes in through [`Endpoint::next`], which parses frames in place and
//! returns one [`Event`] at a time: a DATA payload is handed out as a slice of the input
//! (an opened TLS record), piece by piece as records arrive, never copied. Control frames
//! are handled here (SETTINGS, PING, WINDOW_UPDATE, RST_STREAM, GOAWAY, PRIORITY) and
//! what they owe the peer is queued in [`Endpoint::out`] with our HEADERS, RST_STREAM,
//! WINDOW_UPDATE and GOAWAY frames. DATA frames going out are built by the caller
//! straight into the TLS send buffer, behind [`super::frame::data_head`], within
//! [`Endpoint::send_window`].
//!
//! Flow control both ways: the peer's DATA is counted against our connection and stream
//! windows and WINDOW_UPDATEs are sent as the caller reports bytes delivered
//! ([`Endpoint::release`]), once half a window has been; our DATA is bounded by the
//! peer's windows. Protocol errors are answered with GOAWAY (connection errors, which
//! also end parsing with [`H2Error`]) or RST_STREAM (stream errors, reported as
//! [`Event::Reset`]) with RFC 9113's codes.

use std::collections::HashMap;

use http::Request;

use super::frame::{self, flag, kind, setting, Head, Reason, HEADER_LEN, PREFACE};
use super::H2Error;

/// The windows and sizes we advertise (ztunnel's values).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame: u32,
    pub max_streams: u32,
}

/// A header block (HEADERS and its CONTINUATIONs) larger than this ends the connection.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Decoded header fields above this many bytes (names, values and 32 bytes each, as RFC
/// 9113 counts a header list) reset the stream: a block within [`MAX_HEADER_BLOCK`] can
/// expand through the dynamic table (one byte per reference to a 4 KB entry) to far more
/// than it carries, and what it decodes to would be held.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// Our HPACK dynamic table size (the protocol's default; we advertise no other).
const HEADER_TABLE_SIZE: usize = 4096;
/// The payload of the PING that follows a graceful GOAWAY: its ACK says the peer has seen
/// the GOAWAY, so every stream it opened before is known (RFC 9113 6.8).
const DRAIN_PING: [u8; 8] = *b"zring-gw";
/// The payload of our keepalive PINGs ([`Endpoint::send_ping`]).
const KEEPALIVE_PING: [u8; 8] = *b"zring-ka";

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What the peer sent, one event at a time.
// Lives for one match on the stack; boxing the request would allocate per stream.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event<'a> {
    /// A new stream's request; `end_stream` when it carries no body.
    Request {
        stream: u32,
        req: Request<()>,
        end_stream: bool,
    },
    /// Payload bytes of `stream` (a slice of the input).
    Data { stream: u32, data: &'a [u8] },
    /// END_STREAM: the peer sends nothing more on `stream`.
    End { stream: u32 },
    /// `stream` is gone: the peer reset it, or we did after an error on it.
    Reset { stream: u32, reason: Reason },
    /// The response to a stream we opened (client); `end_stream` when it carries no body.
    Response {
        stream: u32,
        status: u16,
        end_stream: bool,
    },
    /// The peer's GOAWAY (client): streams above `last_stream` were not served and are
    /// gone; no new stream may be opened.
    GoAway { last_stream: u32 },
    /// The peer granted send window (WINDOW_UPDATE or a larger initial window).
    WindowOpened,
}

struct Stream {
    /// Bytes we may still send.
    send_window: i64,
    /// Bytes the peer may still send.
    recv_window: i64,
    /// Delivered bytes not yet given back with a WINDOW_UPDATE.
    unreleased: u32,
    recv_closed: bool,
    send_closed: bool,
    /// Its first header block (the request, or the response) has arrived.
    headed: bool,
}

/// Where the parser is in the input.
enum Rx {
    /// Bytes of the client preface matched so far.
    Preface(usize),
    Head {
        buf: [u8; HEADER_LEN],
        have: usize,
    },
    /// A control or HEADERS frame's payload being gathered (only when split across
    /// inputs; a payload that arrives whole is parsed in place).
    Body {
        head: Head,
        buf: Vec<u8>,
    },
    /// A padded DATA frame's pad length byte is next.
    PadLen {
        head: Head,
    },
    /// Payload bytes of a DATA frame: `left` to deliver (or drop when `drop`), then
    /// `pad` padding bytes.
    Data {
        stream: u32,
        left: usize,
        pad: usize,
        end: bool,
        drop: bool,
    },
    /// Bytes of an ignored frame.
    Skip(usize),
}

/// A header block waiting for CONTINUATION frames.
struct Block {
    stream: u32,
    buf: Vec<u8>,
    end_stream: bool,
}

#[derive(PartialEq, Eq)]
enum Drain {
    No,
    /// GOAWAY(max) and the PING are sent; waiting for the PING's ACK.
    Pinged,
    /// The final GOAWAY is sent: no stream above `last_stream` is accepted.
    Done,
}

/// One end of one HTTP/2 connection.
pub struct Endpoint {
    role: Role,
    limits: Limits,
    rx: Rx,
    hpack: loona_hpack::Decoder<'static>,
    block: Option<Block>,
    streams: HashMap<u32, Stream>,
    /// The highest stream id the peer opened (server), or we opened (client).
    last_stream: u32,
    /// The peer's MAX_CONCURRENT_STREAMS (client: how many streams we may open).
    peer_max_streams: u32,
    /// ACKs of our keepalive PINGs received.
    pongs: u64,
    conn_send: i64,
    conn_recv: i64,
    conn_unreleased: u32,
    /// The peer's SETTINGS.
    peer_window: u32,
    peer_max_frame: u32,
    drain: Drain,
    peer_goaway: bool,
    /// Frames to send, in order.
    pub out: Vec<u8>,
}

impl Endpoint {
    /// A server connection whose SETTINGS and connection WINDOW_UPDATE are queued in
    /// `out`; it expects the client preface first.
    pub fn server(limits: Limits) -> Endpoint {
        let mut out = Vec::new();
        frame::settings(
            &mut out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_CONCURRENT_STREAMS, limits.max_streams),
                (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
                (setting::MAX_FRAME_SIZE, limits.max_frame),
            ],
        );
        Endpoint::with(Role::Server, limits, out)
    }

    /// A client connection whose preface, SETTINGS (as the h2 crate's client sends them:
    /// push off, our stream window and frame size) and connection WINDOW_UPDATE are
    /// queued in `out`. `limits.max_streams` is not advertised (the server opens none).
    pub fn client(limits: Limits) -> Endpoint {
        let mut out = PREFACE.to_vec();
        frame::settings(
            &mut out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
                (setting::MAX_FRAME_SIZE, limits.max_frame),
            ],
        );
        Endpoint::with(Role::Client, limits, out)
    }

    fn with(role: Role, limits: Limits, mut out: Vec<u8>) -> Endpoint {
        let extra = limits
            .connection_window
            .saturating_sub(frame::DEFAULT_WINDOW);
        if extra > 0 {
            frame::window_update(&mut out, 0, extra);
        }
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Endpoint {
            role,
            limits,
            rx: match role {
                Role::Server => Rx::Preface(0),
                Role::Client => next_head(),
            },
            hpack,
            block: None,
            streams: HashMap::new(),
            last_stream: 0,
            peer_max_streams: u32::MAX,
            pongs: 0,
            conn_send: frame::DEFAULT_WINDOW as i64,
            conn_recv: limits.connection_window as i64,
            conn_unreleased: 0,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME,
            drain: Drain::No,
            peer_goaway: false,
            out,
        }
    }

    /// Parses from the front of `input`: the bytes taken, and the event they completed
    /// (none when `input` ended first: call again with more). On `Err` a GOAWAY is queued
    /// and the connection is over.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Event<'a>>), H2Error> {
        match std::mem::replace(&mut self.rx, Rx::Skip(0)) {
            Rx::Preface(have) => self.preface(input, have),
            Rx::Head { mut buf, have } => {
                let n = (HEADER_LEN - have).min(input.len());
                buf[have..have + n].copy_from_slice(&input[..n]);
                if have + n < HEADER_LEN {
                    self.rx = Rx::Head {
                        buf,
                        have: have + n,
                    };
                    return Ok((n, None));
                }
                let event = self.head(Head::parse(&buf), &input[n..])?;
                Ok((n + event.0, event.1))
            }
            Rx::Body { head, mut buf } => {
                let n = (head.len as usize - buf.len()).min(input.len());
                buf.extend_from_slice(&input[..n]);
                if buf.len() < head.len as usize {
                    self.rx = Rx::Body { head, buf };
                    return Ok((n, None));
                }
                self.rx = next_head();
                let event = self.frame(head, &buf)?;
                Ok((n, event.map(owned)))
            }
            Rx::PadLen { head } => {
                let Some(&pad) = input.first() else {
                    self.rx = Rx::PadLen { head };
                    return Ok((0, None));
                };
                let event = self.data_start(head, Some(pad as usize))?;
                Ok((1, event))
            }
            Rx::Data {
                stream,
                left,
                pad,
                end,
                drop,
            } => Ok(self.data(input, stream, left, pad, end, drop)),
            Rx::Skip(left) => {
                let n = left.min(input.len());
                self.rx = match left - n {
                    0 => next_head(),
                    rest => Rx::Skip(rest),
                };
                Ok((n, None))
            }
        }
    }

    fn preface<'a>(
        &mut self,
        input: &'a [u8],
        have: usize,
    ) -> Result<(usize, Option<Event<'a>>), H2Error> {
        let n = (PREFACE.len() - have).min(input.len());
        if input[..n] != PREFACE[have..have + n] {
            return Err(H2Error::Preface);
        }
        self.rx = match have + n {
            24 => next_head(),
            have => Rx::Preface(have),
        };
        Ok((n, None))
    }

    /// A frame header is complete; `rest` is the input after it.
    fn head<'a>(
        &mut self,
        head: Head,
        rest: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), H2Error> {
        if head.len > self.limits.max_frame {
            return Err(self.fail(Reason::FRAME_SIZE_ERROR, "a frame above our MAX_FRAME_SIZE"));
        }
        if let Some(block) = &self.block {
            if head.kind != kind::CONTINUATION || head.stream != block.stream {
                return Err(self.fail(
                    Reason::PROTOCOL_ERROR,
                    "a frame other than CONTINUATION inside a header block",
                ));
            }
        }
        let len = head.len as usize;
        match head.kind {
            kind::DATA if head.has(flag::PADDED) => {
                self.rx = Rx::PadLen { head };
                Ok((0, None))
            }
            kind::DATA => Ok((0, self.data_start(head, None)?)),
            kind::HEADERS
            | kind::CONTINUATION
            | kind::SETTINGS
            | kind::PING
            | kind::WINDOW_UPDATE
            | kind::RST_STREAM
            | kind::GOAWAY
            | kind::PRIORITY
            | kind::PUSH_PROMISE => {
                if rest.len() >= len {
                    self.rx = next_head();
                    return Ok((len, self.frame(head, &rest[..len])?));
                }
                self.rx = Rx::Body {
                    head,
                    buf: Vec::with_capacity(len),
                };
                Ok((0, None))
            }
            // Unknown frame types are ignored (RFC 9113 4.1).
            _ => {
                self.rx = match len {
                    0 => next_head(),
                    len => Rx::Skip(len),
                };
                Ok((0, None))
            }
        }
    }

    /// A whole non-DATA frame.
    fn frame<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        match head.kind {
            kind::HEADERS => self.headers(head, payload),
            kind::CONTINUATION => self.continuation(head, payload),
            kind::SETTINGS => self.settings(head, payload),
            kind::PING => self.ping(head, payload),
            kind::WINDOW_UPDATE => self.window_update(head, payload),
            kind::RST_STREAM => self.rst_stream(head, payload),
            kind::GOAWAY => self.goaway(head, payload),
            kind::PRIORITY => self.priority(head, payload),
            _ => Err(self.fail(Reason::PROTOCOL_ERROR, "a PUSH_PROMISE (push is off)")),
        }
    }

    /// A DATA frame's header (and pad length) is in: flow control is charged for the whole
    /// frame at once.
    fn data_start<'a>(
        &mut self,
        head: Head,
        pad: Option<usize>,
    ) -> Result<Option<Event<'a>>, H2Error> {
        let len = head.len as usize;
        let padding = pad.map_or(0, |p| p + 1);
        if padding > len {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "DATA padding longer than the frame"));
        }
        if head.stream == 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        if head.stream > self.last_stream {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        self.conn_recv -= len as i64;
        if self.conn_recv < 0 {
            return Err(self.fail(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        let end = head.has(flag::END_STREAM);
        let stream = head.stream;
        let (drop, reset) = match self.streams.get_mut(&stream) {
            // A stream we reset or finished: its bytes in flight are dropped.
            None => (true, None),
            Some(s) if s.recv_closed => (true, Some(Reason::STREAM_CLOSED)),
            Some(s) => {
                s.recv_window -= len as i64;
                match s.recv_window < 0 {
                    true => (true, Some(Reason::FLOW_CONTROL_ERROR)),
                    false => (false, None),
                }
            }
        };
        // Bytes never delivered (padding, a dropped frame) are given back at once.
        match drop {
            true => self.release_conn(len),
            false => self.release(stream, padding),
        }
        self.rx = match drop {
            true => Rx::Skip(len - pad.is_some() as usize),
            false => Rx::Data {
                stream,
                left: len - padding,
                pad: pad.unwrap_or(0),
                end,
                drop,
            },
        };
        if matches!(self.rx, Rx::Skip(0)) {
            self.rx = next_head();
        }
        if let Some(reason) = reset {
            return Ok(Some(self.reset(stream, reason)));
        }
        if drop {
            return Ok(None);
        }
        if len == padding {
            return Ok(self.data_done(stream, pad.unwrap_or(0), end));
        }
        Ok(None)
    }

    /// Payload bytes of a DATA frame.
    fn data<'a>(
        &mut self,
        input: &'a [u8],
        stream: u32,
        left: usize,
        pad: usize,
        end: bool,
        drop: bool,
    ) -> (usize, Option<Event<'a>>) {
        if left == 0 {
            let n = pad.min(input.len());
            return (n, self.data_done(stream, pad - n, end));
        }
        let n = left.min(input.len());
        self.rx = match (left - n, pad, end) {
            // The frame is over with its payload: no zero-byte step is left to take.
            (0, 0, false) => next_head(),
            (left, ..) => Rx::Data {
                stream,
                left,
                pad,
                end,
                drop,
            },
        };
        if n == 0 {
            return (0, None);
        }
        let event = Event::Data {
            stream,
            data: &input[..n],
        };
        (n, Some(event))
    }

    /// `pad` padding bytes remain of a DATA frame whose payload is delivered.
    fn data_done<'a>(&mut self, stream: u32, pad: usize, end: bool) -> Option<Event<'a>> {
        if pad > 0 {
            self.rx = Rx::Data {
                stream,
                left: 0,
                pad,
                end,
                drop: false,
            };
            return None;
        }
        self.rx = next_head();
        if !end {
            return None;
        }
        let s = self.streams.get_mut(&stream)?;
        s.recv_closed = true;
        self.finish_if_closed(stream);
        Some(Event::End { stream })
    }

    fn headers<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        let stream = head.stream;
        if stream == 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let Some(block) = header_fragment(head, payload) else {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "HEADERS padding beyond the frame"));
        };
        let block = Block {
            stream,
            buf: block.to_vec(),
            end_stream: head.has(flag::END_STREAM),
        };
        if !head.has(flag::END_HEADERS) {
            self.block = Some(block);
            return Ok(None);
        }
        self.header_block(block)
    }

    fn continuation<'a>(
        &mut self,
        head: Head,
        payload: &[u8],
    ) -> Result<Option<Event<'a>>, H2Error> {
        let Some(mut block) = self.block.take() else {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        block.buf.extend_from_slice(payload);
        if block.buf.len() > MAX_HEADER_BLOCK {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "a header block above 64 KiB"));
        }
        if !head.has(flag::END_HEADERS) {
            self.block = Some(block);
            return Ok(None);
        }
        self.header_block(block)
    }

    /// A complete header block: always decoded (the HPACK table must follow the peer's),
    /// then a new stream's request, or trailers.
    fn header_block<'a>(&mut self, block: Block) -> Result<Option<Event<'a>>, H2Error> {
        let (mut fields, mut size) = (Vec::new(), 0usize);
        // Decoded to the end whatever its size: the dynamic table must stay in step.
        let decoded = self.hpack.decode_with_cb(&block.buf, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size <= MAX_HEADER_LIST {
                fields.push((name.into_owned(), value.into_owned()));
            }
        });
        if decoded.is_err() {
            return Err(self.fail(Reason::COMPRESSION_ERROR, "an undecodable HPACK block"));
        }
        let stream = block.stream;
        if self.role == Role::Client {
            return self.response(block, fields, size);
        }
        if stream <= self.last_stream {
            return self.trailers(stream, block.end_stream);
        }
        if stream.is_multiple_of(2) {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "a client stream with an even id"));
        }
        self.last_stream = stream;
        if self.drain == Drain::Done || self.streams.len() >= self.limits.max_streams as usize {
            frame::rst_stream(&mut self.out, stream, Reason::REFUSED_STREAM);
            return Ok(None);
        }
        let Some(req) = request(fields).filter(|_| size <= MAX_HEADER_LIST) else {
            frame::rst_stream(&mut self.out, stream, Reason::PROTOCOL_ERROR);
            return Ok(None);
        };
        let new = self.new_stream(block.end_stream, true);
        self.streams.insert(stream, new);
        Ok(Some(Event::Request {
            stream,
            req,
            end_stream: block.end_stream,
        }))
    }

    /// A header block from the server (client): the response to a stream we opened (1xx
    /// ones are skipped), or trailers.
    fn response<'a>(
        &mut self,
        block: Block,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        size: usize,
    ) -> Result<Option<Event<'a>>, H2Error> {
        let stream = block.stream;
        if stream.is_multiple_of(2) {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "HEADERS on a server stream"));
        }
        if stream > self.last_stream {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "HEADERS on an idle stream"));
        }
        let Some(s) = self.streams.get(&stream) else {
            return Ok(None);
        };
        if s.headed {
            return self.trailers(stream, block.end_stream);
        }
        let Some(status) = status(&fields).filter(|_| size <= MAX_HEADER_LIST) else {
            return Ok(Some(self.reset(stream, Reason::PROTOCOL_ERROR)));
        };
        if status < 200 {
            return Ok(None);
        }
        let end_stream = block.end_stream;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.headed = true;
            s.recv_closed = end_stream;
        }
        self.finish_if_closed(stream);
        Ok(Some(Event::Response {
            stream,
            status,
            end_stream,
        }))
    }

    /// A second header block on a stream: trailers, which must end it.
    fn trailers<'a>(&mut self, stream: u32, end: bool) -> Result<Option<Event<'a>>, H2Error> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(None);
        };
        if !end || s.recv_closed {
            return Ok(Some(self.reset(stream, Reason::PROTOCOL_ERROR)));
        }
        s.recv_closed = true;
        self.finish_if_closed(stream);
        Ok(Some(Event::End { stream }))
    }

    fn settings<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        if head.stream != 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(self.fail(Reason::FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload"));
            }
            return Ok(None);
        }
        if !payload.len().is_multiple_of(6) {
            return Err(self.fail(
                Reason::FRAME_SIZE_ERROR,
                "a SETTINGS length not a multiple of 6",
            ));
        }
        let mut opened = false;
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            opened |= self.setting(id, value)?;
        }
        frame::settings_ack(&mut self.out);
        Ok(opened.then_some(Event::WindowOpened))
    }

    /// Applies one of the peer's settings; true when it grew the send windows.
    fn setting(&mut self, id: u16, value: u32) -> Result<bool, H2Error> {
        match id {
            setting::ENABLE_PUSH if value > 1 => {
                Err(self.fail(Reason::PROTOCOL_ERROR, "ENABLE_PUSH above 1"))
            }
            setting::INITIAL_WINDOW_SIZE if value > frame::MAX_WINDOW => Err(self.fail(
                Reason::FLOW_CONTROL_ERROR,
                "INITIAL_WINDOW_SIZE above 2^31-1",
            )),
            setting::INITIAL_WINDOW_SIZE => {
                let delta = value as i64 - self.peer_window as i64;
                self.peer_window = value;
                for s in self.streams.values_mut() {
                    s.send_window += delta;
                    if s.send_window > frame::MAX_WINDOW as i64 {
                        return Err(self.fail(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE took a stream window above 2^31-1",
                        ));
                    }
                }
                Ok(delta > 0)
            }
            setting::MAX_FRAME_SIZE
                if !(frame::MIN_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&value) =>
            {
                Err(self.fail(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"))
            }
            setting::MAX_FRAME_SIZE => {
                self.peer_max_frame = value;
                Ok(false)
            }
            setting::MAX_CONCURRENT_STREAMS => {
                self.peer_max_streams = value;
                Ok(false)
            }
            // HEADER_TABLE_SIZE: our blocks use no dynamic table. Unknown settings are
            // ignored (RFC 9113 6.5.2).
            _ => Ok(false),
        }
    }

    fn ping<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        if head.stream != 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "PING on a stream"));
        }
        let Ok(payload) = <[u8; 8]>::try_from(payload) else {
            return Err(self.fail(Reason::FRAME_SIZE_ERROR, "a PING not 8 bytes long"));
        };
        if !head.has(flag::ACK) {
            frame::ping(&mut self.out, true, payload);
        } else if payload == KEEPALIVE_PING {
            self.pongs += 1;
        } else if payload == DRAIN_PING && self.drain == Drain::Pinged {
            frame::goaway(&mut self.out, self.last_stream, Reason::NO_ERROR);
            self.drain = Drain::Done;
        }
        Ok(None)
    }

    fn window_update<'a>(
        &mut self,
        head: Head,
        payload: &[u8],
    ) -> Result<Option<Event<'a>>, H2Error> {
        let Ok(raw) = <[u8; 4]>::try_from(payload) else {
            return Err(self.fail(Reason::FRAME_SIZE_ERROR, "a WINDOW_UPDATE not 4 bytes"));
        };
        let increment = (u32::from_be_bytes(raw) & frame::MAX_WINDOW) as i64;
        if head.stream == 0 {
            if increment == 0 {
                return Err(self.fail(Reason::PROTOCOL_ERROR, "a WINDOW_UPDATE of 0"));
            }
            self.conn_send += increment;
            if self.conn_send > frame::MAX_WINDOW as i64 {
                return Err(self.fail(
                    Reason::FLOW_CONTROL_ERROR,
                    "the connection window above 2^31-1",
                ));
            }
            return Ok(Some(Event::WindowOpened));
        }
        let stream = head.stream;
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_stream {
                return Err(self.fail(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"));
            }
            return Ok(None);
        };
        s.send_window += increment;
        if increment == 0 {
            return Ok(Some(self.reset(stream, Reason::PROTOCOL_ERROR)));
        }
        if s.send_window > frame::MAX_WINDOW as i64 {
            return Ok(Some(self.reset(stream, Reason::FLOW_CONTROL_ERROR)));
        }
        Ok(Some(Event::WindowOpened))
    }

    fn rst_stream<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        let Ok(raw) = <[u8; 4]>::try_from(payload) else {
            return Err(self.fail(Reason::FRAME_SIZE_ERROR, "an RST_STREAM not 4 bytes"));
        };
        if head.stream == 0 || head.stream > self.last_stream {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0 or idle"));
        }
        let stream = head.stream;
        if self.streams.remove(&stream).is_none() {
            return Ok(None);
        }
        let reason = Reason(u32::from_be_bytes(raw));
        Ok(Some(Event::Reset { stream, reason }))
    }

    fn goaway<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        if head.stream != 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
        }
        if payload.len() < 8 {
            return Err(self.fail(Reason::FRAME_SIZE_ERROR, "a GOAWAY shorter than 8 bytes"));
        }
        // Server: streams are the client's; those open finish, and it opens no more.
        self.peer_goaway = true;
        if self.role == Role::Server {
            return Ok(None);
        }
        // Client: streams above the last one the server took were never served.
        let last_stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
            & frame::MAX_WINDOW;
        self.streams.retain(|id, _| *id <= last_stream);
        Ok(Some(Event::GoAway { last_stream }))
    }

    fn priority<'a>(&mut self, head: Head, payload: &[u8]) -> Result<Option<Event<'a>>, H2Error> {
        if head.stream == 0 {
            return Err(self.fail(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
        }
        if payload.len() != 5 {
            if self.streams.contains_key(&head.stream) {
                return Ok(Some(self.reset(head.stream, Reason::FRAME_SIZE_ERROR)));
            }
            frame::rst_stream(&mut self.out, head.stream, Reason::FRAME_SIZE_ERROR);
        }
        Ok(None)
    }

    /// A connection error: GOAWAY queued, parsing over.
    fn fail(&mut self, reason: Reason, what: &'static str) -> H2Error {
        frame::goaway(&mut self.out, self.last_stream, reason);
        self.rx = Rx::Skip(usize::MAX);
        H2Error::Protocol { reason, what }
    }

    /// Resets `stream` (RST_STREAM queued, the stream forgotten).
    pub fn reset<'a>(&mut self, stream: u32, reason: Reason) -> Event<'a> {
        if self.streams.remove(&stream).is_some() {
            frame::rst_stream(&mut self.out, stream, reason);
        }
        Event::Reset { stream, reason }
    }

    fn finish_if_closed(&mut self, stream: u32) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| s.recv_closed && s.send_closed)
        {
            self.streams.remove(&stream);
        }
    }

    /// `n` bytes of `stream`'s DATA were delivered: its window and the connection's are
    /// given back, in WINDOW_UPDATEs of at least half a window.
    pub fn release(&mut self, stream: u32, n: usize) {
        if n == 0 {
            return;
        }
        let half = self.limits.stream_window / 2;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.unreleased += n as u32;
            if s.unreleased >= half && !s.recv_closed {
                frame::window_update(&mut self.out, stream, s.unreleased);
                s.recv_window += s.unreleased as i64;
                s.unreleased = 0;
            }
        }
        self.release_conn(n);
    }

    fn release_conn(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.conn_unreleased += n as u32;
        if self.conn_unreleased >= self.limits.connection_window / 2 {
            frame::window_update(&mut self.out, 0, self.conn_unreleased);
            self.conn_recv += self.conn_unreleased as i64;
            self.conn_unreleased = 0;
        }
    }

    /// Bytes of DATA `stream` may send now (0 for a stream that is gone).
    pub fn send_window(&self, stream: u32) -> usize {
        let Some(s) = self.streams.get(&stream) else {
            return 0;
        };
        s.send_window.min(self.conn_send).max(0) as usize
    }

    /// The largest DATA frame payload the peer accepts.
    pub fn max_frame(&self) -> usize {
        self.peer_max_frame as usize
    }

    /// `n` bytes of DATA were framed for `stream` (within [`Endpoint::send_window`]),
    /// the last of its stream when `end`.
    pub fn sent_data(&mut self, stream: u32, n: usize, end: bool) {
        self.conn_send -= n as i64;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send_window -= n as i64;
            s.send_closed |= end;
        }
        if end {
            self.finish_if_closed(stream);
        }
    }

    /// Queues the response HEADERS of `stream`; with `end_stream` the stream is done on
    /// our side (a refusal), and the peer is told to stop sending.
    pub fn respond(&mut self, stream: u32, status: u16, end_stream: bool) {
        if !self.streams.contains_key(&stream) {
            return;
        }
        frame::headers(
            &mut self.out,
            stream,
            &frame::status_block(status),
            end_stream,
        );
        if end_stream {
            if let Some(s) = self.streams.get(&stream) {
                if !s.recv_closed {
                    frame::rst_stream(&mut self.out, stream, Reason::NO_ERROR);
                }
            }
            self.streams.remove(&stream);
        }
    }

    /// Whether `stream` is still open (not reset, not finished both ways).
    pub fn is_open(&self, stream: u32) -> bool {
        self.streams.contains_key(&stream)
    }

    /// Starts a graceful shutdown: GOAWAY(2^31-1) and a PING now, the final GOAWAY with
    /// the last stream when its ACK arrives.
    pub fn start_drain(&mut self) {
        if self.drain != Drain::No {
            return;
        }
        frame::goaway(&mut self.out, frame::MAX_WINDOW, Reason::NO_ERROR);
        frame::ping(&mut self.out, false, DRAIN_PING);
        self.drain = Drain::Pinged;
    }

    /// No stream is open and none will be (after a drain or the peer's GOAWAY).
    pub fn is_done(&self) -> bool {
        self.streams.is_empty() && (self.drain == Drain::Done || self.peer_goaway)
    }

    /// Streams open.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether a new stream may be opened (client): no GOAWAY from the peer, below its
    /// MAX_CONCURRENT_STREAMS, stream ids left.
    pub fn can_open(&self) -> bool {
        self.role == Role::Client
            && !self.peer_goaway
            && self.streams.len() < self.peer_max_streams as usize
            && self.last_stream + 2 <= frame::MAX_WINDOW
    }

    /// Opens the next stream (client) with the HPACK header `block` of its request
    /// (HEADERS queued, the stream left open for DATA); `None` when [`Self::can_open`]
    /// is false.
    pub fn open_stream(&mut self, block: &[u8]) -> Option<u32> {
        if !self.can_open() {
            return None;
        }
        let stream = self.last_stream + if self.last_stream == 0 { 1 } else { 2 };
        self.last_stream = stream;
        let new = self.new_stream(false, false);
        self.streams.insert(stream, new);
        frame::headers(&mut self.out, stream, block, false);
        Some(stream)
    }

    /// A stream opened now: both windows at their current initial sizes.
    fn new_stream(&self, recv_closed: bool, headed: bool) -> Stream {
        Stream {
            send_window: self.peer_window as i64,
            recv_window: self.limits.stream_window as i64,
            unreleased: 0,
            recv_closed,
            send_closed: false,
            headed,
        }
    }

    /// Whether the peer sent GOAWAY.
    pub fn peer_goaway(&self) -> bool {
        self.peer_goaway
    }

    /// Queues a keepalive PING; [`Self::pongs`] counts its ACKs.
    pub fn send_ping(&mut self) {
        frame::ping(&mut self.out, false, KEEPALIVE_PING);
    }

    /// ACKs of our keepalive PINGs received so far.
    pub fn pongs(&self) -> u64 {
        self.pongs
    }
}

fn next_head() -> Rx {
    Rx::Head {
        buf: [0; HEADER_LEN],
        have: 0,
    }
}

/// An event parsed from a gathered payload borrows nothing of the input.
fn owned<'a>(event: Event<'_>) -> Event<'a> {
    match event {
        Event::Request {
            stream,
            req,
            end_stream,
        } => Event::Request {
            stream,
            req,
            end_stream,
        },
        Event::Data { .. } => unreachable!("DATA payloads are never gathered"),
        Event::End { stream } => Event::End { stream },
        Event::Response {
            stream,
            status,
            end_stream,
        } => Event::Response {
            stream,
            status,
            end_stream,
        },
        Event::GoAway { last_stream } => Event::GoAway { last_stream },
        Event::Reset { stream, reason } => Event::Reset { stream, reason },
        Event::WindowOpened => Event::WindowOpened,
    }
}

/// The `:status` of a response's fields; `None` when it is missing, repeated, not three
/// digits, or a pseudo-header other than `:status` is present.
fn status(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<u16> {
    let mut status = None;
    for (name, value) in fields {
        match name.as_slice() {
            b":status" if status.is_none() && value.len() == 3 => {
                let text = std::str::from_utf8(value).ok()?;
                status = Some(text.parse::<u16>().ok().filter(|s| *s >= 100)?);
            }
            n if n.starts_with(b":") => return None,
            _ => {}
        }
    }
    status
}

/// The header block fragment of a HEADERS payload, without padding and priority.
fn header_fragment(head: Head, payload: &[u8]) -> Option<&[u8]> {
    let mut p = payload;
    let mut pad = 0;
    if head.has(flag::PADDED) {
        pad = *p.first()? as usize;
        p = &p[1..];
    }
    if head.has(flag::PRIORITY) {
        p = p.get(5..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

/// The request of a decoded header block; `None` when it is malformed (unknown or
/// misplaced pseudo-headers, a bad method, authority or header).
fn request(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Request<()>> {
    let mut builder = Request::builder().version(http::Version::HTTP_2);
    let (mut method, mut authority, mut scheme, mut path) = (None, None, None, None);
    let mut regular = false;
    for (name, value) in fields {
        let slot = match name.as_slice() {
            b":method" => &mut method,
            b":authority" => &mut authority,
            b":scheme" => &mut scheme,
            b":path" => &mut path,
            n if n.starts_with(b":") => return None,
            _ => {
                regular = true;
                let name = http::HeaderName::from_bytes(&name).ok()?;
                let value = http::HeaderValue::from_bytes(&value).ok()?;
                builder = builder.header(name, value);
                continue;
            }
        };
        if regular || slot.replace(value).is_some() {
            return None;
        }
    }
    let method = http::Method::from_bytes(&method?).ok()?;
    let uri = match (&method, scheme, path) {
        (&http::Method::CONNECT, None, None) => http::Uri::try_from(authority?).ok()?,
        (_, Some(scheme), Some(path)) => {
            let mut uri = http::Uri::builder()
                .scheme(scheme.as_slice())
                .path_and_query(path);
            if let Some(a) = authority {
                uri = uri.authority(a);
            }
            uri.build().ok()?
        }
        _ => return None,
    };
    builder.method(method).uri(uri).body(()).ok()
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
