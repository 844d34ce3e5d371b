use std::future::Future;
use std::io;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

use super::SerialSettings;

/// Opens the byte stream to a board, again after every loss: the real
/// serial port in the lab, an in-memory pipe in unit tests.
pub trait Connector: Send + Sync + 'static {
    /// The byte stream one connection runs over.
    type Port: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Open it anew; fails like a missing device node while unplugged.
    fn open(&mut self) -> impl Future<Output = io::Result<Self::Port>> + Send;

    /// For logs and state details: which port.
    fn describe(&self) -> String;
}

/// A USB serial port (or a pseudo-terminal standing in for one).
#[derive(Debug, Clone)]
pub struct SerialPort {
    /// The device node.
    pub path: PathBuf,
    /// Line speed.
    pub baud: u32,
}

impl SerialPort {
    /// The port `settings` name, at their speed.
    pub fn of(settings: &SerialSettings) -> Self {
        SerialPort {
            path: settings.port.clone(),
            baud: settings.baud,
        }
    }
}

impl Connector for SerialPort {
    type Port = SerialStream;

    async fn open(&mut self) -> io::Result<SerialStream> {
        let path = self.path.to_string_lossy().into_owned();
        // 8N1, no flow control: what the boards speak (wire-protocol.md).
        tokio_serial::new(path, self.baud)
            .open_native_async()
            .map_err(io::Error::from)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
