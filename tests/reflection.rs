//! A generic gRPC client that knows nothing of hilt (no generated code, no
//! .proto files): it learns the API from server reflection and calls it
//! with JSON-built dynamic messages, as grpcurl would.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use common::Hiltd;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

async fn reflect(ch: &Channel, req: MessageRequest) -> MessageResponse {
    let mut c = ServerReflectionClient::new(ch.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(req),
    };
    let mut s = c
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let r: ServerReflectionResponse = s.message().await.unwrap().unwrap();
    r.message_response.unwrap()
}

/// Fetch the file defining `symbol` and, transitively, its imports.
async fn pool_for(ch: &Channel, symbol: &str) -> DescriptorPool {
    let mut files = Vec::<prost_types::FileDescriptorProto>::new();
    let mut todo = vec![MessageRequest::FileContainingSymbol(symbol.into())];
    while let Some(req) = todo.pop() {
        let MessageResponse::FileDescriptorResponse(r) = reflect(ch, req).await else {
            panic!("no descriptor")
        };
        for bytes in r.file_descriptor_proto {
            let f = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            if files.iter().any(|g| g.name == f.name) {
                continue;
            }
            for dep in &f.dependency {
                if !files.iter().any(|g| g.name() == dep) {
                    todo.push(MessageRequest::FileByFilename(dep.clone()));
                }
            }
            files.push(f);
        }
    }
    // dependencies first
    let mut ordered = Vec::new();
    while !files.is_empty() {
        let i = files
            .iter()
            .position(|f| {
                f.dependency.iter().all(|d| {
                    ordered
                        .iter()
                        .any(|o: &prost_types::FileDescriptorProto| o.name() == d)
                })
            })
            .expect("acyclic imports");
        ordered.push(files.remove(i));
    }
    DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet { file: ordered })
        .unwrap()
}

#[derive(Clone)]
struct DynCodec(MessageDescriptor);
struct DynEncoder;
struct DynDecoder(MessageDescriptor);

impl Codec for DynCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynEncoder;
    type Decoder = DynDecoder;
    fn encoder(&mut self) -> DynEncoder {
        DynEncoder
    }
    fn decoder(&mut self) -> DynDecoder {
        DynDecoder(self.0.clone())
    }
}

impl Encoder for DynEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: DynamicMessage,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for DynDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// Call `method` with a request given as JSON; answer as JSON.
async fn call(ch: &Channel, method: &MethodDescriptor, json: &str) -> serde_json::Value {
    let mut de = serde_json::Deserializer::from_str(json);
    let req = DynamicMessage::deserialize(method.input(), &mut de).unwrap();
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name())
        .parse()
        .unwrap();
    let resp = grpc
        .unary(tonic::Request::new(req), path, DynCodec(method.output()))
        .await
        .unwrap_or_else(|s| panic!("{} failed: {s}", method.name()))
        .into_inner();
    serde_json::to_value(&resp).unwrap()
}

fn f32_base64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_client_that_knows_only_reflection_can_list_describe_and_execute() {
    let d = Hiltd::start(None);
    let ch = Channel::from_shared(d.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let MessageResponse::ListServicesResponse(list) =
        reflect(&ch, MessageRequest::ListServices(String::new())).await
    else {
        panic!("no service list")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"hilt.v1.Hilt"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let pool = pool_for(&ch, "hilt.v1.Hilt").await;
    let svc = pool.get_service_by_name("hilt.v1.Hilt").unwrap();
    let method = |n: &str| svc.methods().find(|m| m.name() == n).unwrap();

    let devices = call(&ch, &method("ListDevices"), "{}").await;
    let ids: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"shg-readout"), "{devices}");

    let desc = call(
        &ch,
        &method("DescribeDevice"),
        r#"{"deviceId":"shg-readout"}"#,
    )
    .await;
    let spec = &desc["spec"];
    let (n_in, n_par, n_out) = (
        spec["nIn"].as_u64().unwrap() as usize,
        spec["nPar"].as_u64().unwrap() as usize,
        spec["nOut"].as_u64().unwrap(),
    );

    let lease = call(
        &ch,
        &method("AcquireLease"),
        r#"{"deviceId":"shg-readout","ttlSeconds":30}"#,
    )
    .await;
    let lease_id = lease["leaseId"].as_str().unwrap();

    let req = serde_json::json!({
        "deviceId": "shg-readout",
        "leaseId": lease_id,
        "batch": {
            "x": {"shape": [2, n_in], "data": f32_base64(&vec![0.5; 2 * n_in])},
            "theta": {"shape": [1, n_par], "data": f32_base64(&vec![0.5; n_par])},
            "repeats": 1
        }
    });
    let m = call(&ch, &method("Execute"), &req.to_string()).await;
    let shape: Vec<u64> = m["y"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(shape, [2, n_out]);
    assert_eq!(m["deviceId"], "shg-readout");
}
