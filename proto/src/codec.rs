//! The codec of every lifeboat.v1 service: prost, with smaller starting buffers than tonic's.
//!
//! tonic gives each call an 8 KiB encode and an 8 KiB decode buffer. An agent session is one
//! call that lives as long as the agent is connected and carries a heartbeat of a few dozen
//! bytes every few seconds, so on a coordinator with thousands of agents those 16 KiB per
//! session are a large share of its memory. The buffers still grow to fit any message (up to
//! [`crate::MAX_MESSAGE_BYTES`]); only the first allocation is smaller.

use std::marker::PhantomData;

use tonic::codec::BufferSettings;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode and decode buffer per call.
pub const BUFFER_BYTES: usize = 1024;
/// Encoded bytes a streaming call buffers before it yields them (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

/// [`ProstCodec`] with [`BUFFER_BYTES`] to start with (the generated code names it through
/// `codec_path` in build.rs).
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
