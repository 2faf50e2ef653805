package io.github.passerelleiot.hub.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * Hub speaks for devices through gateways.
 * Device-scoped calls name a gateway by its resource name
 * (projects/{project}/locations/{location}/registries/{registry}/devices/{gateway})
 * and a device by its id in the same registry. A call that needs the
 * device attached (SubscribeConfig, PublishState, PublishEvent,
 * SubscribeCommands) attaches it for its own duration when no Attach stream
 * holds it; attachments are counted, and the device is detached when the
 * last holder goes.
 * Replicas: any hub replica serves any call. Each gateway's MQTT
 * connection is held by one replica at a time; a call that reaches another
 * is served through it, with nothing different for the caller. When a
 * gateway's connection moves between replicas (one dies, drains, or the
 * gateways are balanced), calls on the other replicas wait and go on:
 * devices are attached again (Attach streams are told Reattached),
 * subscriptions made again, unacknowledged publishes sent again. GetPool
 * and the connection state in ListGateways are those of the replica
 * answering.
 * Retries: a call ends with UNAVAILABLE when the replica serving it stops,
 * dies or drains, when no replica could take its gateway in time, or when
 * the bridge cannot be reached; its google.rpc.ErrorInfo (domain
 * hub.passerelle.dev) says which: HUB_CLOSING, HUB_DRAINING,
 * GATEWAY_MOVED, BRIDGE_UNAVAILABLE, or none when the connection broke.
 * Clients should use the gRPC service config shipped as
 * services/hub/serviceconfig.json (hub.ServiceConfig in Go; the policy of
 * the Python, TypeScript and Java clients): every call but CreateGateway
 * is tried again on UNAVAILABLE, 5 attempts in all, with backoff from
 * 0.2 s doubling. gRPC retries a stream only until its first response; a
 * stream that ends with UNAVAILABLE later is opened again by the caller
 * with the same backoff (and jitter): Attach attaches again,
 * SubscribeConfig delivers the current config first, PublishState sends
 * again the requests not yet answered (each answer means the bridge
 * acknowledged that state), PublishEvents sends again the events not yet
 * acknowledged.
 * Errors: every error status carries a google.rpc.ErrorInfo with domain
 * hub.passerelle.dev and a reason that is the name of an ErrorReason value
 * (errors.proto), for example DEVICE_NOT_BOUND.
 * </pre>
 */
@javax.annotation.Generated(
    value = "by gRPC proto compiler",
    comments = "Source: passerelle/hub/v1/hub.proto")
@io.grpc.stub.annotations.GrpcGenerated
public final class HubGrpc {

  private HubGrpc() {}

  public static final String SERVICE_NAME = "passerelle.hub.v1.Hub";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.AttachRequest,
      io.github.passerelleiot.hub.v1.AttachResponse> getAttachMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Attach",
      requestType = io.github.passerelleiot.hub.v1.AttachRequest.class,
      responseType = io.github.passerelleiot.hub.v1.AttachResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.AttachRequest,
      io.github.passerelleiot.hub.v1.AttachResponse> getAttachMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.AttachRequest, io.github.passerelleiot.hub.v1.AttachResponse> getAttachMethod;
    if ((getAttachMethod = HubGrpc.getAttachMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getAttachMethod = HubGrpc.getAttachMethod) == null) {
          HubGrpc.getAttachMethod = getAttachMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.AttachRequest, io.github.passerelleiot.hub.v1.AttachResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Attach"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.AttachRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.AttachResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("Attach"))
              .build();
        }
      }
    }
    return getAttachMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeConfigRequest,
      io.github.passerelleiot.hub.v1.SubscribeConfigResponse> getSubscribeConfigMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SubscribeConfig",
      requestType = io.github.passerelleiot.hub.v1.SubscribeConfigRequest.class,
      responseType = io.github.passerelleiot.hub.v1.SubscribeConfigResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeConfigRequest,
      io.github.passerelleiot.hub.v1.SubscribeConfigResponse> getSubscribeConfigMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeConfigRequest, io.github.passerelleiot.hub.v1.SubscribeConfigResponse> getSubscribeConfigMethod;
    if ((getSubscribeConfigMethod = HubGrpc.getSubscribeConfigMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getSubscribeConfigMethod = HubGrpc.getSubscribeConfigMethod) == null) {
          HubGrpc.getSubscribeConfigMethod = getSubscribeConfigMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.SubscribeConfigRequest, io.github.passerelleiot.hub.v1.SubscribeConfigResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SubscribeConfig"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.SubscribeConfigRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.SubscribeConfigResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("SubscribeConfig"))
              .build();
        }
      }
    }
    return getSubscribeConfigMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishStateRequest,
      io.github.passerelleiot.hub.v1.PublishStateResponse> getPublishStateMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "PublishState",
      requestType = io.github.passerelleiot.hub.v1.PublishStateRequest.class,
      responseType = io.github.passerelleiot.hub.v1.PublishStateResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishStateRequest,
      io.github.passerelleiot.hub.v1.PublishStateResponse> getPublishStateMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishStateRequest, io.github.passerelleiot.hub.v1.PublishStateResponse> getPublishStateMethod;
    if ((getPublishStateMethod = HubGrpc.getPublishStateMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getPublishStateMethod = HubGrpc.getPublishStateMethod) == null) {
          HubGrpc.getPublishStateMethod = getPublishStateMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.PublishStateRequest, io.github.passerelleiot.hub.v1.PublishStateResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "PublishState"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishStateRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishStateResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("PublishState"))
              .build();
        }
      }
    }
    return getPublishStateMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventRequest,
      io.github.passerelleiot.hub.v1.PublishEventResponse> getPublishEventMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "PublishEvent",
      requestType = io.github.passerelleiot.hub.v1.PublishEventRequest.class,
      responseType = io.github.passerelleiot.hub.v1.PublishEventResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventRequest,
      io.github.passerelleiot.hub.v1.PublishEventResponse> getPublishEventMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventRequest, io.github.passerelleiot.hub.v1.PublishEventResponse> getPublishEventMethod;
    if ((getPublishEventMethod = HubGrpc.getPublishEventMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getPublishEventMethod = HubGrpc.getPublishEventMethod) == null) {
          HubGrpc.getPublishEventMethod = getPublishEventMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.PublishEventRequest, io.github.passerelleiot.hub.v1.PublishEventResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "PublishEvent"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishEventRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishEventResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("PublishEvent"))
              .build();
        }
      }
    }
    return getPublishEventMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventsRequest,
      io.github.passerelleiot.hub.v1.PublishEventsResponse> getPublishEventsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "PublishEvents",
      requestType = io.github.passerelleiot.hub.v1.PublishEventsRequest.class,
      responseType = io.github.passerelleiot.hub.v1.PublishEventsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventsRequest,
      io.github.passerelleiot.hub.v1.PublishEventsResponse> getPublishEventsMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.PublishEventsRequest, io.github.passerelleiot.hub.v1.PublishEventsResponse> getPublishEventsMethod;
    if ((getPublishEventsMethod = HubGrpc.getPublishEventsMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getPublishEventsMethod = HubGrpc.getPublishEventsMethod) == null) {
          HubGrpc.getPublishEventsMethod = getPublishEventsMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.PublishEventsRequest, io.github.passerelleiot.hub.v1.PublishEventsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "PublishEvents"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishEventsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.PublishEventsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("PublishEvents"))
              .build();
        }
      }
    }
    return getPublishEventsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeCommandsRequest,
      io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> getSubscribeCommandsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "SubscribeCommands",
      requestType = io.github.passerelleiot.hub.v1.SubscribeCommandsRequest.class,
      responseType = io.github.passerelleiot.hub.v1.SubscribeCommandsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeCommandsRequest,
      io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> getSubscribeCommandsMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.SubscribeCommandsRequest, io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> getSubscribeCommandsMethod;
    if ((getSubscribeCommandsMethod = HubGrpc.getSubscribeCommandsMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getSubscribeCommandsMethod = HubGrpc.getSubscribeCommandsMethod) == null) {
          HubGrpc.getSubscribeCommandsMethod = getSubscribeCommandsMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.SubscribeCommandsRequest, io.github.passerelleiot.hub.v1.SubscribeCommandsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "SubscribeCommands"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.SubscribeCommandsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.SubscribeCommandsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("SubscribeCommands"))
              .build();
        }
      }
    }
    return getSubscribeCommandsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.CreateGatewayRequest,
      io.github.passerelleiot.hub.v1.CreateGatewayResponse> getCreateGatewayMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateGateway",
      requestType = io.github.passerelleiot.hub.v1.CreateGatewayRequest.class,
      responseType = io.github.passerelleiot.hub.v1.CreateGatewayResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.CreateGatewayRequest,
      io.github.passerelleiot.hub.v1.CreateGatewayResponse> getCreateGatewayMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.CreateGatewayRequest, io.github.passerelleiot.hub.v1.CreateGatewayResponse> getCreateGatewayMethod;
    if ((getCreateGatewayMethod = HubGrpc.getCreateGatewayMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getCreateGatewayMethod = HubGrpc.getCreateGatewayMethod) == null) {
          HubGrpc.getCreateGatewayMethod = getCreateGatewayMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.CreateGatewayRequest, io.github.passerelleiot.hub.v1.CreateGatewayResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateGateway"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.CreateGatewayRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.CreateGatewayResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("CreateGateway"))
              .build();
        }
      }
    }
    return getCreateGatewayMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.ListGatewaysRequest,
      io.github.passerelleiot.hub.v1.ListGatewaysResponse> getListGatewaysMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListGateways",
      requestType = io.github.passerelleiot.hub.v1.ListGatewaysRequest.class,
      responseType = io.github.passerelleiot.hub.v1.ListGatewaysResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.ListGatewaysRequest,
      io.github.passerelleiot.hub.v1.ListGatewaysResponse> getListGatewaysMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.ListGatewaysRequest, io.github.passerelleiot.hub.v1.ListGatewaysResponse> getListGatewaysMethod;
    if ((getListGatewaysMethod = HubGrpc.getListGatewaysMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getListGatewaysMethod = HubGrpc.getListGatewaysMethod) == null) {
          HubGrpc.getListGatewaysMethod = getListGatewaysMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.ListGatewaysRequest, io.github.passerelleiot.hub.v1.ListGatewaysResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListGateways"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.ListGatewaysRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.ListGatewaysResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("ListGateways"))
              .build();
        }
      }
    }
    return getListGatewaysMethod;
  }

  private static volatile io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.GetPoolRequest,
      io.github.passerelleiot.hub.v1.GetPoolResponse> getGetPoolMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetPool",
      requestType = io.github.passerelleiot.hub.v1.GetPoolRequest.class,
      responseType = io.github.passerelleiot.hub.v1.GetPoolResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.GetPoolRequest,
      io.github.passerelleiot.hub.v1.GetPoolResponse> getGetPoolMethod() {
    io.grpc.MethodDescriptor<io.github.passerelleiot.hub.v1.GetPoolRequest, io.github.passerelleiot.hub.v1.GetPoolResponse> getGetPoolMethod;
    if ((getGetPoolMethod = HubGrpc.getGetPoolMethod) == null) {
      synchronized (HubGrpc.class) {
        if ((getGetPoolMethod = HubGrpc.getGetPoolMethod) == null) {
          HubGrpc.getGetPoolMethod = getGetPoolMethod =
              io.grpc.MethodDescriptor.<io.github.passerelleiot.hub.v1.GetPoolRequest, io.github.passerelleiot.hub.v1.GetPoolResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetPool"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.GetPoolRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.github.passerelleiot.hub.v1.GetPoolResponse.getDefaultInstance()))
              .setSchemaDescriptor(new HubMethodDescriptorSupplier("GetPool"))
              .build();
        }
      }
    }
    return getGetPoolMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static HubStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<HubStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<HubStub>() {
        @java.lang.Override
        public HubStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new HubStub(channel, callOptions);
        }
      };
    return HubStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static HubBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<HubBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<HubBlockingStub>() {
        @java.lang.Override
        public HubBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new HubBlockingStub(channel, callOptions);
        }
      };
    return HubBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static HubFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<HubFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<HubFutureStub>() {
        @java.lang.Override
        public HubFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new HubFutureStub(channel, callOptions);
        }
      };
    return HubFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * Hub speaks for devices through gateways.
   * Device-scoped calls name a gateway by its resource name
   * (projects/{project}/locations/{location}/registries/{registry}/devices/{gateway})
   * and a device by its id in the same registry. A call that needs the
   * device attached (SubscribeConfig, PublishState, PublishEvent,
   * SubscribeCommands) attaches it for its own duration when no Attach stream
   * holds it; attachments are counted, and the device is detached when the
   * last holder goes.
   * Replicas: any hub replica serves any call. Each gateway's MQTT
   * connection is held by one replica at a time; a call that reaches another
   * is served through it, with nothing different for the caller. When a
   * gateway's connection moves between replicas (one dies, drains, or the
   * gateways are balanced), calls on the other replicas wait and go on:
   * devices are attached again (Attach streams are told Reattached),
   * subscriptions made again, unacknowledged publishes sent again. GetPool
   * and the connection state in ListGateways are those of the replica
   * answering.
   * Retries: a call ends with UNAVAILABLE when the replica serving it stops,
   * dies or drains, when no replica could take its gateway in time, or when
   * the bridge cannot be reached; its google.rpc.ErrorInfo (domain
   * hub.passerelle.dev) says which: HUB_CLOSING, HUB_DRAINING,
   * GATEWAY_MOVED, BRIDGE_UNAVAILABLE, or none when the connection broke.
   * Clients should use the gRPC service config shipped as
   * services/hub/serviceconfig.json (hub.ServiceConfig in Go; the policy of
   * the Python, TypeScript and Java clients): every call but CreateGateway
   * is tried again on UNAVAILABLE, 5 attempts in all, with backoff from
   * 0.2 s doubling. gRPC retries a stream only until its first response; a
   * stream that ends with UNAVAILABLE later is opened again by the caller
   * with the same backoff (and jitter): Attach attaches again,
   * SubscribeConfig delivers the current config first, PublishState sends
   * again the requests not yet answered (each answer means the bridge
   * acknowledged that state), PublishEvents sends again the events not yet
   * acknowledged.
   * Errors: every error status carries a google.rpc.ErrorInfo with domain
   * hub.passerelle.dev and a reason that is the name of an ErrorReason value
   * (errors.proto), for example DEVICE_NOT_BOUND.
   * </pre>
   */
  public static abstract class HubImplBase implements io.grpc.BindableService {

    /**
     * <pre>
     * Attach attaches a device to its gateway's connection and keeps it
     * attached for as long as the stream lives. The first request names the
     * gateway and the device; the first response (attached) comes once the
     * bridge has accepted the attach. Later responses tell of re-attaches
     * after reconnects and relay the gateway errors about this device. The
     * device is detached when the stream ends and no other call holds it.
     * A refused attach ends the stream with PERMISSION_DENIED (or
     * FAILED_PRECONDITION when the device does not exist) and the bridge's
     * error description.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.AttachRequest> attach(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.AttachResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getAttachMethod(), responseObserver);
    }

    /**
     * <pre>
     * SubscribeConfig streams a device's configuration: the current one at
     * once, then every new version. The hub acknowledges each delivery to the
     * bridge. A slow reader gets the newest version; older ones it has not
     * read yet are skipped.
     * </pre>
     */
    public void subscribeConfig(io.github.passerelleiot.hub.v1.SubscribeConfigRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeConfigResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSubscribeConfigMethod(), responseObserver);
    }

    /**
     * <pre>
     * PublishState publishes state payloads for a device. Each request is
     * answered, in order, once the bridge has acknowledged (PUBACKed) it. The
     * bridge accepts at most one state per second per device, so the hub paces
     * each device's states: a state sent sooner than a second after the one
     * before waits for its turn instead of being refused.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishStateRequest> publishState(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishStateResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getPublishStateMethod(), responseObserver);
    }

    /**
     * <pre>
     * PublishEvent publishes one telemetry event for a device and returns
     * once the bridge has acknowledged (PUBACKed) it.
     * </pre>
     */
    public void publishEvent(io.github.passerelleiot.hub.v1.PublishEventRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getPublishEventMethod(), responseObserver);
    }

    /**
     * <pre>
     * PublishEvents publishes telemetry events for devices of one gateway
     * (and the gateway itself) on one stream, for high rates. Each request
     * is answered, in the order sent, once the bridge has acknowledged
     * (PUBACKed) it: the event is then stored durably. A device is attached
     * once, on its first event, and stays attached until the stream ends.
     * Flow control: at most 256 events (and 4 MiB of payload) are in
     * flight (read, not yet answered) on a stream; the hub reads no more
     * until the oldest is answered, so a caller that sends faster than the
     * bridge acknowledges is held back by HTTP/2 flow control. The bridge receives a stream's
     * events in flight in any order; the answers come in the order sent.
     * A bad event (an invalid device id or sub_folder, a payload over the
     * bridge's limit, a device the bridge refuses to attach or the hub
     * cannot publish for) is answered with refused set, its reason and a
     * message, and the stream goes on. The stream ends with an error status
     * only for what concerns the whole stream: a gateway missing or
     * invalid, or another than the first request's (INVALID_ARGUMENT), a
     * gateway the hub has no key for or the bridge refuses, and UNAVAILABLE
     * (the replica stops or drains, the bridge cannot be reached). Events
     * answered before that are stored; the others may be, and are sent again
     * by a caller that retries.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventsRequest> publishEvents(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventsResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getPublishEventsMethod(), responseObserver);
    }

    /**
     * <pre>
     * SubscribeCommands streams the commands sent to a device. A reader too
     * slow to keep up with its bounded buffer is ended with
     * RESOURCE_EXHAUSTED.
     * </pre>
     */
    public void subscribeCommands(io.github.passerelleiot.hub.v1.SubscribeCommandsRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getSubscribeCommandsMethod(), responseObserver);
    }

    /**
     * <pre>
     * CreateGateway makes a key pair in the hub's key store and creates the
     * gateway device, with the public key, through the admin API. Callers
     * never handle gateway keys.
     * </pre>
     */
    public void createGateway(io.github.passerelleiot.hub.v1.CreateGatewayRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.CreateGatewayResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateGatewayMethod(), responseObserver);
    }

    /**
     * <pre>
     * ListGateways lists the gateways the hub holds keys for (from its
     * gateways file and its key store), with their connection state.
     * </pre>
     */
    public void listGateways(io.github.passerelleiot.hub.v1.ListGatewaysRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.ListGatewaysResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListGatewaysMethod(), responseObserver);
    }

    /**
     * <pre>
     * GetPool returns a read-only view of the open gateway connections and
     * the devices attached to each.
     * </pre>
     */
    public void getPool(io.github.passerelleiot.hub.v1.GetPoolRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.GetPoolResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetPoolMethod(), responseObserver);
    }

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
          .addMethod(
            getAttachMethod(),
            io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.AttachRequest,
                io.github.passerelleiot.hub.v1.AttachResponse>(
                  this, METHODID_ATTACH)))
          .addMethod(
            getSubscribeConfigMethod(),
            io.grpc.stub.ServerCalls.asyncServerStreamingCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.SubscribeConfigRequest,
                io.github.passerelleiot.hub.v1.SubscribeConfigResponse>(
                  this, METHODID_SUBSCRIBE_CONFIG)))
          .addMethod(
            getPublishStateMethod(),
            io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.PublishStateRequest,
                io.github.passerelleiot.hub.v1.PublishStateResponse>(
                  this, METHODID_PUBLISH_STATE)))
          .addMethod(
            getPublishEventMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.PublishEventRequest,
                io.github.passerelleiot.hub.v1.PublishEventResponse>(
                  this, METHODID_PUBLISH_EVENT)))
          .addMethod(
            getPublishEventsMethod(),
            io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.PublishEventsRequest,
                io.github.passerelleiot.hub.v1.PublishEventsResponse>(
                  this, METHODID_PUBLISH_EVENTS)))
          .addMethod(
            getSubscribeCommandsMethod(),
            io.grpc.stub.ServerCalls.asyncServerStreamingCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.SubscribeCommandsRequest,
                io.github.passerelleiot.hub.v1.SubscribeCommandsResponse>(
                  this, METHODID_SUBSCRIBE_COMMANDS)))
          .addMethod(
            getCreateGatewayMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.CreateGatewayRequest,
                io.github.passerelleiot.hub.v1.CreateGatewayResponse>(
                  this, METHODID_CREATE_GATEWAY)))
          .addMethod(
            getListGatewaysMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.ListGatewaysRequest,
                io.github.passerelleiot.hub.v1.ListGatewaysResponse>(
                  this, METHODID_LIST_GATEWAYS)))
          .addMethod(
            getGetPoolMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                io.github.passerelleiot.hub.v1.GetPoolRequest,
                io.github.passerelleiot.hub.v1.GetPoolResponse>(
                  this, METHODID_GET_POOL)))
          .build();
    }
  }

  /**
   * <pre>
   * Hub speaks for devices through gateways.
   * Device-scoped calls name a gateway by its resource name
   * (projects/{project}/locations/{location}/registries/{registry}/devices/{gateway})
   * and a device by its id in the same registry. A call that needs the
   * device attached (SubscribeConfig, PublishState, PublishEvent,
   * SubscribeCommands) attaches it for its own duration when no Attach stream
   * holds it; attachments are counted, and the device is detached when the
   * last holder goes.
   * Replicas: any hub replica serves any call. Each gateway's MQTT
   * connection is held by one replica at a time; a call that reaches another
   * is served through it, with nothing different for the caller. When a
   * gateway's connection moves between replicas (one dies, drains, or the
   * gateways are balanced), calls on the other replicas wait and go on:
   * devices are attached again (Attach streams are told Reattached),
   * subscriptions made again, unacknowledged publishes sent again. GetPool
   * and the connection state in ListGateways are those of the replica
   * answering.
   * Retries: a call ends with UNAVAILABLE when the replica serving it stops,
   * dies or drains, when no replica could take its gateway in time, or when
   * the bridge cannot be reached; its google.rpc.ErrorInfo (domain
   * hub.passerelle.dev) says which: HUB_CLOSING, HUB_DRAINING,
   * GATEWAY_MOVED, BRIDGE_UNAVAILABLE, or none when the connection broke.
   * Clients should use the gRPC service config shipped as
   * services/hub/serviceconfig.json (hub.ServiceConfig in Go; the policy of
   * the Python, TypeScript and Java clients): every call but CreateGateway
   * is tried again on UNAVAILABLE, 5 attempts in all, with backoff from
   * 0.2 s doubling. gRPC retries a stream only until its first response; a
   * stream that ends with UNAVAILABLE later is opened again by the caller
   * with the same backoff (and jitter): Attach attaches again,
   * SubscribeConfig delivers the current config first, PublishState sends
   * again the requests not yet answered (each answer means the bridge
   * acknowledged that state), PublishEvents sends again the events not yet
   * acknowledged.
   * Errors: every error status carries a google.rpc.ErrorInfo with domain
   * hub.passerelle.dev and a reason that is the name of an ErrorReason value
   * (errors.proto), for example DEVICE_NOT_BOUND.
   * </pre>
   */
  public static final class HubStub extends io.grpc.stub.AbstractAsyncStub<HubStub> {
    private HubStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected HubStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new HubStub(channel, callOptions);
    }

    /**
     * <pre>
     * Attach attaches a device to its gateway's connection and keeps it
     * attached for as long as the stream lives. The first request names the
     * gateway and the device; the first response (attached) comes once the
     * bridge has accepted the attach. Later responses tell of re-attaches
     * after reconnects and relay the gateway errors about this device. The
     * device is detached when the stream ends and no other call holds it.
     * A refused attach ends the stream with PERMISSION_DENIED (or
     * FAILED_PRECONDITION when the device does not exist) and the bridge's
     * error description.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.AttachRequest> attach(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.AttachResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getAttachMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * SubscribeConfig streams a device's configuration: the current one at
     * once, then every new version. The hub acknowledges each delivery to the
     * bridge. A slow reader gets the newest version; older ones it has not
     * read yet are skipped.
     * </pre>
     */
    public void subscribeConfig(io.github.passerelleiot.hub.v1.SubscribeConfigRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeConfigResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getSubscribeConfigMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * PublishState publishes state payloads for a device. Each request is
     * answered, in order, once the bridge has acknowledged (PUBACKed) it. The
     * bridge accepts at most one state per second per device, so the hub paces
     * each device's states: a state sent sooner than a second after the one
     * before waits for its turn instead of being refused.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishStateRequest> publishState(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishStateResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getPublishStateMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * PublishEvent publishes one telemetry event for a device and returns
     * once the bridge has acknowledged (PUBACKed) it.
     * </pre>
     */
    public void publishEvent(io.github.passerelleiot.hub.v1.PublishEventRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getPublishEventMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * PublishEvents publishes telemetry events for devices of one gateway
     * (and the gateway itself) on one stream, for high rates. Each request
     * is answered, in the order sent, once the bridge has acknowledged
     * (PUBACKed) it: the event is then stored durably. A device is attached
     * once, on its first event, and stays attached until the stream ends.
     * Flow control: at most 256 events (and 4 MiB of payload) are in
     * flight (read, not yet answered) on a stream; the hub reads no more
     * until the oldest is answered, so a caller that sends faster than the
     * bridge acknowledges is held back by HTTP/2 flow control. The bridge receives a stream's
     * events in flight in any order; the answers come in the order sent.
     * A bad event (an invalid device id or sub_folder, a payload over the
     * bridge's limit, a device the bridge refuses to attach or the hub
     * cannot publish for) is answered with refused set, its reason and a
     * message, and the stream goes on. The stream ends with an error status
     * only for what concerns the whole stream: a gateway missing or
     * invalid, or another than the first request's (INVALID_ARGUMENT), a
     * gateway the hub has no key for or the bridge refuses, and UNAVAILABLE
     * (the replica stops or drains, the bridge cannot be reached). Events
     * answered before that are stored; the others may be, and are sent again
     * by a caller that retries.
     * </pre>
     */
    public io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventsRequest> publishEvents(
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventsResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getPublishEventsMethod(), getCallOptions()), responseObserver);
    }

    /**
     * <pre>
     * SubscribeCommands streams the commands sent to a device. A reader too
     * slow to keep up with its bounded buffer is ended with
     * RESOURCE_EXHAUSTED.
     * </pre>
     */
    public void subscribeCommands(io.github.passerelleiot.hub.v1.SubscribeCommandsRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getSubscribeCommandsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * CreateGateway makes a key pair in the hub's key store and creates the
     * gateway device, with the public key, through the admin API. Callers
     * never handle gateway keys.
     * </pre>
     */
    public void createGateway(io.github.passerelleiot.hub.v1.CreateGatewayRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.CreateGatewayResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateGatewayMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * ListGateways lists the gateways the hub holds keys for (from its
     * gateways file and its key store), with their connection state.
     * </pre>
     */
    public void listGateways(io.github.passerelleiot.hub.v1.ListGatewaysRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.ListGatewaysResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListGatewaysMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * GetPool returns a read-only view of the open gateway connections and
     * the devices attached to each.
     * </pre>
     */
    public void getPool(io.github.passerelleiot.hub.v1.GetPoolRequest request,
        io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.GetPoolResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetPoolMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * <pre>
   * Hub speaks for devices through gateways.
   * Device-scoped calls name a gateway by its resource name
   * (projects/{project}/locations/{location}/registries/{registry}/devices/{gateway})
   * and a device by its id in the same registry. A call that needs the
   * device attached (SubscribeConfig, PublishState, PublishEvent,
   * SubscribeCommands) attaches it for its own duration when no Attach stream
   * holds it; attachments are counted, and the device is detached when the
   * last holder goes.
   * Replicas: any hub replica serves any call. Each gateway's MQTT
   * connection is held by one replica at a time; a call that reaches another
   * is served through it, with nothing different for the caller. When a
   * gateway's connection moves between replicas (one dies, drains, or the
   * gateways are balanced), calls on the other replicas wait and go on:
   * devices are attached again (Attach streams are told Reattached),
   * subscriptions made again, unacknowledged publishes sent again. GetPool
   * and the connection state in ListGateways are those of the replica
   * answering.
   * Retries: a call ends with UNAVAILABLE when the replica serving it stops,
   * dies or drains, when no replica could take its gateway in time, or when
   * the bridge cannot be reached; its google.rpc.ErrorInfo (domain
   * hub.passerelle.dev) says which: HUB_CLOSING, HUB_DRAINING,
   * GATEWAY_MOVED, BRIDGE_UNAVAILABLE, or none when the connection broke.
   * Clients should use the gRPC service config shipped as
   * services/hub/serviceconfig.json (hub.ServiceConfig in Go; the policy of
   * the Python, TypeScript and Java clients): every call but CreateGateway
   * is tried again on UNAVAILABLE, 5 attempts in all, with backoff from
   * 0.2 s doubling. gRPC retries a stream only until its first response; a
   * stream that ends with UNAVAILABLE later is opened again by the caller
   * with the same backoff (and jitter): Attach attaches again,
   * SubscribeConfig delivers the current config first, PublishState sends
   * again the requests not yet answered (each answer means the bridge
   * acknowledged that state), PublishEvents sends again the events not yet
   * acknowledged.
   * Errors: every error status carries a google.rpc.ErrorInfo with domain
   * hub.passerelle.dev and a reason that is the name of an ErrorReason value
   * (errors.proto), for example DEVICE_NOT_BOUND.
   * </pre>
   */
  public static final class HubBlockingStub extends io.grpc.stub.AbstractBlockingStub<HubBlockingStub> {
    private HubBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected HubBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new HubBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * SubscribeConfig streams a device's configuration: the current one at
     * once, then every new version. The hub acknowledges each delivery to the
     * bridge. A slow reader gets the newest version; older ones it has not
     * read yet are skipped.
     * </pre>
     */
    public java.util.Iterator<io.github.passerelleiot.hub.v1.SubscribeConfigResponse> subscribeConfig(
        io.github.passerelleiot.hub.v1.SubscribeConfigRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getSubscribeConfigMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * PublishEvent publishes one telemetry event for a device and returns
     * once the bridge has acknowledged (PUBACKed) it.
     * </pre>
     */
    public io.github.passerelleiot.hub.v1.PublishEventResponse publishEvent(io.github.passerelleiot.hub.v1.PublishEventRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getPublishEventMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * SubscribeCommands streams the commands sent to a device. A reader too
     * slow to keep up with its bounded buffer is ended with
     * RESOURCE_EXHAUSTED.
     * </pre>
     */
    public java.util.Iterator<io.github.passerelleiot.hub.v1.SubscribeCommandsResponse> subscribeCommands(
        io.github.passerelleiot.hub.v1.SubscribeCommandsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getSubscribeCommandsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * CreateGateway makes a key pair in the hub's key store and creates the
     * gateway device, with the public key, through the admin API. Callers
     * never handle gateway keys.
     * </pre>
     */
    public io.github.passerelleiot.hub.v1.CreateGatewayResponse createGateway(io.github.passerelleiot.hub.v1.CreateGatewayRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateGatewayMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * ListGateways lists the gateways the hub holds keys for (from its
     * gateways file and its key store), with their connection state.
     * </pre>
     */
    public io.github.passerelleiot.hub.v1.ListGatewaysResponse listGateways(io.github.passerelleiot.hub.v1.ListGatewaysRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListGatewaysMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * GetPool returns a read-only view of the open gateway connections and
     * the devices attached to each.
     * </pre>
     */
    public io.github.passerelleiot.hub.v1.GetPoolResponse getPool(io.github.passerelleiot.hub.v1.GetPoolRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetPoolMethod(), getCallOptions(), request);
    }
  }

  /**
   * <pre>
   * Hub speaks for devices through gateways.
   * Device-scoped calls name a gateway by its resource name
   * (projects/{project}/locations/{location}/registries/{registry}/devices/{gateway})
   * and a device by its id in the same registry. A call that needs the
   * device attached (SubscribeConfig, PublishState, PublishEvent,
   * SubscribeCommands) attaches it for its own duration when no Attach stream
   * holds it; attachments are counted, and the device is detached when the
   * last holder goes.
   * Replicas: any hub replica serves any call. Each gateway's MQTT
   * connection is held by one replica at a time; a call that reaches another
   * is served through it, with nothing different for the caller. When a
   * gateway's connection moves between replicas (one dies, drains, or the
   * gateways are balanced), calls on the other replicas wait and go on:
   * devices are attached again (Attach streams are told Reattached),
   * subscriptions made again, unacknowledged publishes sent again. GetPool
   * and the connection state in ListGateways are those of the replica
   * answering.
   * Retries: a call ends with UNAVAILABLE when the replica serving it stops,
   * dies or drains, when no replica could take its gateway in time, or when
   * the bridge cannot be reached; its google.rpc.ErrorInfo (domain
   * hub.passerelle.dev) says which: HUB_CLOSING, HUB_DRAINING,
   * GATEWAY_MOVED, BRIDGE_UNAVAILABLE, or none when the connection broke.
   * Clients should use the gRPC service config shipped as
   * services/hub/serviceconfig.json (hub.ServiceConfig in Go; the policy of
   * the Python, TypeScript and Java clients): every call but CreateGateway
   * is tried again on UNAVAILABLE, 5 attempts in all, with backoff from
   * 0.2 s doubling. gRPC retries a stream only until its first response; a
   * stream that ends with UNAVAILABLE later is opened again by the caller
   * with the same backoff (and jitter): Attach attaches again,
   * SubscribeConfig delivers the current config first, PublishState sends
   * again the requests not yet answered (each answer means the bridge
   * acknowledged that state), PublishEvents sends again the events not yet
   * acknowledged.
   * Errors: every error status carries a google.rpc.ErrorInfo with domain
   * hub.passerelle.dev and a reason that is the name of an ErrorReason value
   * (errors.proto), for example DEVICE_NOT_BOUND.
   * </pre>
   */
  public static final class HubFutureStub extends io.grpc.stub.AbstractFutureStub<HubFutureStub> {
    private HubFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected HubFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new HubFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * PublishEvent publishes one telemetry event for a device and returns
     * once the bridge has acknowledged (PUBACKed) it.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.github.passerelleiot.hub.v1.PublishEventResponse> publishEvent(
        io.github.passerelleiot.hub.v1.PublishEventRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getPublishEventMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * CreateGateway makes a key pair in the hub's key store and creates the
     * gateway device, with the public key, through the admin API. Callers
     * never handle gateway keys.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.github.passerelleiot.hub.v1.CreateGatewayResponse> createGateway(
        io.github.passerelleiot.hub.v1.CreateGatewayRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateGatewayMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * ListGateways lists the gateways the hub holds keys for (from its
     * gateways file and its key store), with their connection state.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.github.passerelleiot.hub.v1.ListGatewaysResponse> listGateways(
        io.github.passerelleiot.hub.v1.ListGatewaysRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListGatewaysMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * GetPool returns a read-only view of the open gateway connections and
     * the devices attached to each.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.github.passerelleiot.hub.v1.GetPoolResponse> getPool(
        io.github.passerelleiot.hub.v1.GetPoolRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetPoolMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_SUBSCRIBE_CONFIG = 0;
  private static final int METHODID_PUBLISH_EVENT = 1;
  private static final int METHODID_SUBSCRIBE_COMMANDS = 2;
  private static final int METHODID_CREATE_GATEWAY = 3;
  private static final int METHODID_LIST_GATEWAYS = 4;
  private static final int METHODID_GET_POOL = 5;
  private static final int METHODID_ATTACH = 6;
  private static final int METHODID_PUBLISH_STATE = 7;
  private static final int METHODID_PUBLISH_EVENTS = 8;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final HubImplBase serviceImpl;
    private final int methodId;

    MethodHandlers(HubImplBase serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_SUBSCRIBE_CONFIG:
          serviceImpl.subscribeConfig((io.github.passerelleiot.hub.v1.SubscribeConfigRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeConfigResponse>) responseObserver);
          break;
        case METHODID_PUBLISH_EVENT:
          serviceImpl.publishEvent((io.github.passerelleiot.hub.v1.PublishEventRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventResponse>) responseObserver);
          break;
        case METHODID_SUBSCRIBE_COMMANDS:
          serviceImpl.subscribeCommands((io.github.passerelleiot.hub.v1.SubscribeCommandsRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.SubscribeCommandsResponse>) responseObserver);
          break;
        case METHODID_CREATE_GATEWAY:
          serviceImpl.createGateway((io.github.passerelleiot.hub.v1.CreateGatewayRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.CreateGatewayResponse>) responseObserver);
          break;
        case METHODID_LIST_GATEWAYS:
          serviceImpl.listGateways((io.github.passerelleiot.hub.v1.ListGatewaysRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.ListGatewaysResponse>) responseObserver);
          break;
        case METHODID_GET_POOL:
          serviceImpl.getPool((io.github.passerelleiot.hub.v1.GetPoolRequest) request,
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.GetPoolResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_ATTACH:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.attach(
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.AttachResponse>) responseObserver);
        case METHODID_PUBLISH_STATE:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.publishState(
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishStateResponse>) responseObserver);
        case METHODID_PUBLISH_EVENTS:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.publishEvents(
              (io.grpc.stub.StreamObserver<io.github.passerelleiot.hub.v1.PublishEventsResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  private static abstract class HubBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    HubBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.github.passerelleiot.hub.v1.HubProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("Hub");
    }
  }

  private static final class HubFileDescriptorSupplier
      extends HubBaseDescriptorSupplier {
    HubFileDescriptorSupplier() {}
  }

  private static final class HubMethodDescriptorSupplier
      extends HubBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final String methodName;

    HubMethodDescriptorSupplier(String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (HubGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new HubFileDescriptorSupplier())
              .addMethod(getAttachMethod())
              .addMethod(getSubscribeConfigMethod())
              .addMethod(getPublishStateMethod())
              .addMethod(getPublishEventMethod())
              .addMethod(getPublishEventsMethod())
              .addMethod(getSubscribeCommandsMethod())
              .addMethod(getCreateGatewayMethod())
              .addMethod(getListGatewaysMethod())
              .addMethod(getGetPoolMethod())
              .build();
        }
      }
    }
    return result;
  }
}
