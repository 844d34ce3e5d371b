use hilt_core::{Batch, Measurement};
use hilt_proto::v1::{self, stream_request::Kind, stream_response::Result as Answer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::ClientError;
use crate::connect::RawClient;

/// A pipelined measurement stream. Split it so one task sends while
/// another receives; the daemon answers in sequence order.
#[derive(Debug)]
pub struct BatchStream {
    /// Sends batches.
    pub sender: StreamSender,
    /// Receives their answers, in the order sent.
    pub receiver: StreamReceiver,
}

/// The sending half of a [`BatchStream`]; numbers batches 0, 1, 2, ….
#[derive(Debug)]
pub struct StreamSender {
    tx: mpsc::Sender<v1::StreamRequest>,
    next_seq: u64,
}

/// The receiving half of a [`BatchStream`].
#[derive(Debug)]
pub struct StreamReceiver {
    rx: tonic::Streaming<v1::StreamResponse>,
}

impl BatchStream {
    pub(crate) async fn open(
        mut client: RawClient,
        device: &str,
        lease: &str,
        window: u32,
    ) -> Result<Self, ClientError> {
        let (tx, rx) = mpsc::channel(window.max(1) as usize);
        tx.send(v1::StreamRequest {
            kind: Some(Kind::Open(v1::StreamOpen {
                device_id: device.to_string(),
                lease_id: lease.to_string(),
                window,
            })),
        })
        .await
        .map_err(|_| ClientError::StreamClosed)?;
        let inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        Ok(BatchStream {
            sender: StreamSender { tx, next_seq: 0 },
            receiver: StreamReceiver { rx: inbound },
        })
    }

    /// The two halves, for two tasks.
    pub fn into_split(self) -> (StreamSender, StreamReceiver) {
        (self.sender, self.receiver)
    }
}

impl StreamSender {
    /// Queue a batch; returns its sequence number. Backpressure: the daemon
    /// stops reading at `window` unanswered batches, and this waits once
    /// the local buffer (also `window` deep) is full too.
    pub async fn send(&mut self, batch: &Batch) -> Result<u64, ClientError> {
        let seq = self.next_seq;
        self.tx
            .send(v1::StreamRequest {
                kind: Some(Kind::Batch(v1::StreamBatch {
                    seq,
                    batch: Some(batch.into()),
                })),
            })
            .await
            .map_err(|_| ClientError::StreamClosed)?;
        self.next_seq += 1;
        Ok(seq)
    }
}

impl StreamReceiver {
    /// The next answer: `None` when the daemon closed the stream after the
    /// last answer; an outer `Err` when the stream itself failed.
    pub async fn recv(
        &mut self,
    ) -> Option<Result<(u64, Result<Measurement, ClientError>), ClientError>> {
        match self.rx.message().await {
            Ok(None) => None,
            Err(s) => Some(Err(s.into())),
            Ok(Some(r)) => {
                let result = match r.result {
                    Some(Answer::Measurement(m)) => {
                        Measurement::try_from(&m).map_err(ClientError::from)
                    }
                    Some(Answer::Error(e)) => Err(ClientError::Status {
                        code: tonic::Code::from_i32(e.code),
                        message: e.message,
                    }),
                    None => Err(hilt_proto::ConvertError::new("result", "missing").into()),
                };
                Some(Ok((r.seq, result)))
            }
        }
    }
}
