//! Response bodies handed on in pieces as large as what has already
//! arrived.
//!
//! The engine writes a streamed answer (`logs`, `events`, pull progress) as
//! one HTTP chunk per line, and hyper's connection to the engine hands the
//! body over one chunk at a time. Passed on one by one, each chunk would
//! cost the proxy a write to the client — most of its time on a log stream.
//! [`Coalesce`] joins the chunks that keep coming, up to [`LIMIT`] bytes.
//!
//! The proxy runs a client's connection and its engine connection in one
//! task, the client's side first, and counts the engine side's turns in
//! [`ENGINE_TURNS`]. When [`Coalesce`] holds something and the next chunk
//! is not there yet, it waits for the engine side's next turn — within the
//! same pass of the task — and if that brings nothing, it holds what it has
//! for at most [`HOLD`] more, since a stream that is flowing has more on
//! the way; the end of the body, or [`LIMIT`] bytes, send it at once. A
//! line of `docker events` is late by a millisecond at most; a log read at
//! full speed goes out in large writes, which costs the proxy and its
//! client far less than one write a line. Outside such a task, what is held
//! goes out whenever the next chunk is not ready.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

/// Most bytes joined into one piece.
pub const LIMIT: usize = 64 << 10;

/// How long data is held for more once the engine has nothing further.
pub const HOLD: std::time::Duration = std::time::Duration::from_millis(1);

/// Most frames joined in one poll (empty frames would never fill a piece).
const MAX_FRAMES: usize = 1024;

tokio::task_local! {
    /// How many times the current task has polled its engine connections.
    pub static ENGINE_TURNS: Cell<u64>;
}

/// The current task's engine turns, if it counts them.
fn engine_turns() -> Option<u64> {
    ENGINE_TURNS.try_with(Cell::get).ok()
}

/// A body whose data frames are joined while they keep coming.
pub struct Coalesce<B: Body> {
    inner: B,
    buffer: BytesMut,
    /// A frame that is not data (trailers) or an error, to hand on after
    /// the data held before it.
    held: Option<Result<Frame<Bytes>, B::Error>>,
    /// The inner body has ended.
    ended: bool,
    /// Data is held and the engine side has not had its turn since the
    /// inner body was found empty at this count of turns.
    waiting_since: Option<u64>,
    /// When what is held goes out if nothing more comes.
    flush: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B: Body> Coalesce<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
            held: None,
            ended: false,
            waiting_since: None,
            flush: None,
        }
    }

    fn take(&mut self) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.waiting_since = None;
        self.flush = None;
        Poll::Ready(Some(Ok(Frame::data(self.buffer.split().freeze()))))
    }
}

impl<B> Body for Coalesce<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        for _ in 0..MAX_FRAMES {
            if this.held.is_some() || this.ended {
                if !this.buffer.is_empty() {
                    return this.take();
                }
                return Poll::Ready(this.held.take());
            }
            if this.buffer.len() >= LIMIT {
                return this.take();
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending if this.buffer.is_empty() => return Poll::Pending,
                Poll::Pending => match (this.waiting_since, engine_turns()) {
                    (_, None) => return this.take(),
                    // The engine side has had a turn and brought nothing:
                    // hold what is here a moment for more, no longer.
                    (Some(since), Some(now)) if now != since => {
                        let flush = this
                            .flush
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(HOLD)));
                        if flush.as_mut().poll(cx).is_ready() {
                            return this.take();
                        }
                        return Poll::Pending;
                    }
                    (_, Some(now)) => {
                        // Look again after its next turn.
                        this.waiting_since.get_or_insert(now);
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                },
                Poll::Ready(frame) => frame,
            };
            this.waiting_since = None;
            match frame {
                None => this.ended = true,
                Some(Err(error)) => this.held = Some(Err(error)),
                Some(Ok(frame)) => match frame.into_data() {
                    // A large piece alone goes on as it is, uncopied.
                    Ok(data) if this.buffer.is_empty() && data.len() >= LIMIT / 2 => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => this.buffer.extend_from_slice(&data),
                    Err(frame) => this.held = Some(Ok(frame)),
                },
            }
        }
        this.take()
    }

    fn is_end_stream(&self) -> bool {
        self.buffer.is_empty() && self.held.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let inner = if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        };
        let held = self.buffer.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + held);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use super::*;

    /// What a body's poll answers.
    type Step = Poll<Option<Result<Frame<Bytes>, Infallible>>>;

    /// A body that answers each poll from a script.
    struct Script(VecDeque<Step>);

    impl Body for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Step {
            self.0.pop_front().unwrap_or(Poll::Ready(None))
        }
    }

    fn data(text: &str) -> Step {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(text.to_owned())))))
    }

    /// What one poll hands on: data as text, `trailers`, `pending` or `end`.
    fn poll(body: &mut Coalesce<Script>) -> String {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Pending => "pending".to_owned(),
            Poll::Ready(None) => "end".to_owned(),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => String::from_utf8_lossy(&data).into_owned(),
                Err(_) => "trailers".to_owned(),
            },
        }
    }

    /// Everything the body hands on outside a session, polled until it
    /// ends.
    fn polls(script: Vec<Step>) -> Vec<String> {
        let mut body = Coalesce::new(Script(script.into()));
        let mut seen = Vec::new();
        while seen.last().is_none_or(|last| last != "end") {
            seen.push(poll(&mut body));
        }
        assert!(body.is_end_stream());
        seen
    }

    #[test]
    fn outside_a_session_what_is_ready_goes_on_together() {
        assert_eq!(
            polls(vec![
                data("a"),
                data("b"),
                Poll::Pending,
                data("c"),
                Poll::Pending,
                Poll::Pending,
                data("d")
            ]),
            ["ab", "c", "pending", "d", "end"]
        );
    }

    /// Polls once, then gives the engine side its turn, as a session does.
    fn step(body: &mut Coalesce<Script>) -> String {
        let seen = poll(body);
        ENGINE_TURNS.with(|turns| turns.set(turns.get() + 1));
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_session_chunks_are_joined_then_held_a_moment_for_more() {
        ENGINE_TURNS
            .scope(Cell::new(0), async {
                let mut body = Coalesce::new(Script(
                    vec![
                        data("a"),
                        Poll::Pending,
                        data("b"),
                        Poll::Pending,
                        Poll::Pending,
                        data("c"),
                        Poll::Pending,
                        Poll::Pending,
                        Poll::Pending,
                        data("d"),
                    ]
                    .into(),
                ));
                assert_eq!(step(&mut body), "pending", "a, then the engine's turn");
                assert_eq!(step(&mut body), "pending", "b, then the engine's turn");
                assert_eq!(step(&mut body), "pending", "nothing came: held");
                tokio::time::advance(HOLD / 2).await;
                assert_eq!(step(&mut body), "pending", "c joins");
                assert_eq!(step(&mut body), "pending", "still held");
                tokio::time::advance(HOLD / 2).await;
                assert_eq!(step(&mut body), "abc", "held no longer than HOLD");
                assert_eq!(step(&mut body), "d", "the end sends what is held");
                assert_eq!(step(&mut body), "end");
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn held_data_waits_for_the_engine_side_turn_however_often_it_is_polled() {
        ENGINE_TURNS
            .scope(Cell::new(0), async {
                let mut body = Coalesce::new(Script(
                    vec![
                        data("a"),
                        Poll::Pending,
                        Poll::Pending,
                        Poll::Pending,
                        Poll::Pending,
                    ]
                    .into(),
                ));
                assert_eq!(poll(&mut body), "pending");
                assert_eq!(poll(&mut body), "pending", "no turn yet");
                assert_eq!(step(&mut body), "pending");
                assert_eq!(step(&mut body), "pending", "held");
                tokio::time::advance(HOLD).await;
                assert_eq!(step(&mut body), "a");
            })
            .await;
    }

    #[test]
    fn trailers_follow_the_data_before_them() {
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("x-done", hyper::header::HeaderValue::from_static("1"));
        assert_eq!(
            polls(vec![
                data("a"),
                data("b"),
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            ]),
            ["ab", "trailers", "end"]
        );
    }

    #[test]
    fn pieces_stay_under_the_limit_and_large_ones_pass_uncopied() {
        let line = "x".repeat(1000);
        let script = (0..200).map(|_| data(&line)).collect();
        let sizes: Vec<usize> = polls(script).iter().map(String::len).collect();
        assert!(
            sizes[..sizes.len() - 1]
                .iter()
                .all(|&size| size <= LIMIT + 1000),
            "{sizes:?}"
        );
        assert_eq!(sizes.iter().sum::<usize>(), 200 * 1000 + "end".len());
        let large = "y".repeat(LIMIT);
        assert_eq!(
            polls(vec![data(&large), data("z")]),
            [large, "z".to_owned(), "end".to_owned()]
        );
    }

    #[test]
    fn empty_frames_do_not_hold_the_body_forever() {
        let script = (0..5000).map(|_| data("")).chain([data("a")]).collect();
        assert_eq!(polls(script).last().map(String::as_str), Some("end"));
    }

    #[test]
    fn the_size_counts_what_is_held() {
        let body = Coalesce::new(http_body_util::Full::new(Bytes::from_static(b"hello")));
        assert_eq!(body.size_hint().exact(), Some(5));
    }
}
