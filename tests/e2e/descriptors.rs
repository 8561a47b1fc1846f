//! The parts of protobuf's descriptors the tests read (`google.protobuf.FileDescriptorSet`,
//! `FileDescriptorProto`, `ServiceDescriptorProto`, `MethodDescriptorProto`): which services and
//! methods a descriptor set or server reflection names.

#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDescriptorSet {
    #[prost(message, repeated, tag = "1")]
    pub file: Vec<FileDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDescriptor {
    #[prost(string, tag = "2")]
    pub package: String,
    #[prost(message, repeated, tag = "6")]
    pub service: Vec<ServiceDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceDescriptor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub method: Vec<MethodDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MethodDescriptor {
    #[prost(string, tag = "1")]
    pub name: String,
}
