package io.github.passerelleiot.hub;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.protobuf.ByteString;
import io.github.passerelleiot.hub.v1.AttachRequest;
import io.github.passerelleiot.hub.v1.AttachResponse;
import io.github.passerelleiot.hub.v1.AttachedDevice;
import io.github.passerelleiot.hub.v1.CreateGatewayRequest;
import io.github.passerelleiot.hub.v1.ErrorReason;
import io.github.passerelleiot.hub.v1.GatewayConnection;
import io.github.passerelleiot.hub.v1.GetPoolRequest;
import io.github.passerelleiot.hub.v1.HubGrpc;
import io.github.passerelleiot.hub.v1.ListGatewaysRequest;
import io.github.passerelleiot.hub.v1.PublishEventRequest;
import io.github.passerelleiot.hub.v1.PublishEventsRequest;
import io.github.passerelleiot.hub.v1.PublishEventsResponse;
import io.github.passerelleiot.hub.v1.PublishStateRequest;
import io.github.passerelleiot.hub.v1.PublishStateResponse;
import io.github.passerelleiot.hub.v1.SubscribeConfigRequest;
import io.github.passerelleiot.hub.v1.SubscribeConfigResponse;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.AfterClass;
import org.junit.Before;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The Java client against a real passerelle serve: an error's status, a cancelled stream, and a
 * reconnect after the hub restarts.
 */
public class HubClientTest {
  private static final String PARENT = "projects/p1/locations/us-central1";
  private static final long TIMEOUT_S = 30; // for every call: a test never hangs
  private static Serve serve;
  private ManagedChannel channel;
  private HubGrpc.HubBlockingStub hub;

  @BeforeClass
  public static void startServe() throws Exception {
    serve = new Serve();
    serve.start();
  }

  @AfterClass
  public static void stopServe() throws Exception {
    serve.close();
  }

  @Before
  public void connect() {
    channel = HubChannels.plaintext(serve.hubAddr, serve.token);
    hub = HubGrpc.newBlockingStub(channel);
  }

  @After
  public void disconnect() throws InterruptedException {
    channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
  }

  private HubGrpc.HubBlockingStub hub() {
    return hub.withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS);
  }

  /**
   * A registry, a gateway made by the hub, and a device created and bound through Attach: returns
   * the gateway's name; the device is dev-1.
   */
  private String gatewayWithDevice(String registryId) throws Exception {
    return gatewayWithDevice(registryId, "");
  }

  /** gatewayWithDevice with more registry fields, as JSON members after the id. */
  private String gatewayWithDevice(String registryId, String moreFields) throws Exception {
    serve.admin("POST", PARENT + "/registries", "{\"id\":\"" + registryId + "\"" + moreFields + "}");
    String registry = PARENT + "/registries/" + registryId;
    String gateway = hub().createGateway(CreateGatewayRequest.newBuilder().setParent(registry).setGatewayId("gw-1").build())
        .getGateway().getName();
    assertEquals(registry + "/devices/gw-1", gateway);
    BlockingQueue<Object> events = new LinkedBlockingQueue<>();
    StreamObserver<AttachRequest> requests = HubGrpc.newStub(channel).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
        .attach(observer(events));
    requests.onNext(AttachRequest.newBuilder().setGateway(gateway).setDeviceId("dev-1")
        .setCreateIfMissing(true).setBindIfNeeded(true).build());
    Object first = events.poll(TIMEOUT_S, TimeUnit.SECONDS);
    assertTrue("Attach answered " + first, first instanceof AttachResponse);
    AttachResponse r = (AttachResponse) first;
    assertTrue(r.hasAttached());
    assertTrue(r.getAttached().getCreated());
    assertTrue(r.getAttached().getBound());
    requests.onError(Status.CANCELLED.asException());
    return gateway;
  }

  /** An observer that queues each response, then the Status the stream ended with. */
  private static <T> StreamObserver<T> observer(BlockingQueue<Object> queue) {
    return new StreamObserver<T>() {
      @Override
      public void onNext(T value) {
        queue.add(value);
      }

      @Override
      public void onError(Throwable t) {
        queue.add(Status.fromThrowable(t));
      }

      @Override
      public void onCompleted() {
        queue.add(Status.OK);
      }
    };
  }

  private List<String> attachedDevices(String gateway) {
    List<String> ids = new ArrayList<>();
    for (GatewayConnection c : hub().getPool(GetPoolRequest.getDefaultInstance()).getConnectionsList()) {
      if (c.getGateway().equals(gateway)) {
        for (AttachedDevice d : c.getAttachedDevicesList()) {
          ids.add(d.getDeviceId());
        }
      }
    }
    return ids;
  }

  @Test
  public void errorStatus() throws Exception {
    ManagedChannel noToken = HubChannels.plaintext(serve.hubAddr, null);
    try {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () ->
          HubGrpc.newBlockingStub(noToken).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
              .listGateways(ListGatewaysRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      assertEquals("missing 'authorization: Bearer <token>'", e.getStatus().getDescription());
      assertEquals(ErrorReason.TOKEN_MISSING, HubErrors.reason(e));
    } finally {
      noToken.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }

    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> hub().createGateway(
        CreateGatewayRequest.newBuilder().setParent(PARENT + "/registries/nowhere").setGatewayId("gw").build()));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription(), e.getStatus().getDescription().contains("The format of 'gateway_id' is invalid"));
    assertEquals(ErrorReason.INVALID_FIELD, HubErrors.reason(e));
    assertEquals("gateway_id", HubErrors.errorInfo(e).getMetadataOrThrow("field"));

    e = assertThrows(StatusRuntimeException.class, () -> hub().publishEvent(PublishEventRequest.newBuilder()
        .setGateway(PARENT + "/registries/nowhere/devices/gw-1").setDeviceId("dev-1").setData(ByteString.copyFromUtf8("x")).build()));
    assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription(), e.getStatus().getDescription().contains("the hub holds no key for this gateway"));
    assertTrue(e.getStatus().getDescription(), e.getStatus().getDescription().contains("create it with CreateGateway"));
    assertEquals(ErrorReason.GATEWAY_KEY_MISSING, HubErrors.reason(e));
  }

  @Test
  public void errorReasonsOfDevices() throws Exception {
    String gateway = gatewayWithDevice("java-reasons",
        ",\"eventNotificationConfigs\":[{\"pubsubTopicName\":\"projects/p1/topics/java-reasons\"}]");
    serve.admin("POST", PARENT + "/registries/java-reasons/devices", "{\"id\":\"unbound\"}");
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> hub().publishEvent(PublishEventRequest.newBuilder()
        .setGateway(gateway).setDeviceId("unbound").setData(ByteString.copyFromUtf8("x")).build()));
    assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
    assertEquals(ErrorReason.DEVICE_NOT_BOUND, HubErrors.reason(e));

    // On a PublishEvents stream the refused event is answered with its reason, and the stream goes on.
    BlockingQueue<Object> answers = new LinkedBlockingQueue<>();
    StreamObserver<PublishEventsRequest> events = HubGrpc.newStub(channel).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
        .publishEvents(observer(answers));
    events.onNext(PublishEventsRequest.newBuilder().setGateway(gateway).setDeviceId("unbound")
        .setData(ByteString.copyFromUtf8("x")).build());
    events.onNext(PublishEventsRequest.newBuilder().setDeviceId("dev-1").setData(ByteString.copyFromUtf8("stored")).build());
    events.onCompleted();
    PublishEventsResponse first = (PublishEventsResponse) answers.poll(TIMEOUT_S, TimeUnit.SECONDS);
    assertEquals(0, first.getIndex());
    assertEquals(ErrorReason.DEVICE_NOT_BOUND, first.getRefused().getReason());
    Object second = answers.poll(TIMEOUT_S, TimeUnit.SECONDS);
    assertTrue("second answer " + second, second instanceof PublishEventsResponse);
    assertEquals(1, ((PublishEventsResponse) second).getIndex());
    assertFalse(((PublishEventsResponse) second).hasRefused());
    assertEquals(Status.OK, answers.poll(TIMEOUT_S, TimeUnit.SECONDS));
  }

  @Test
  public void tls() throws Exception {
    Serve.TLSHub tlsHub = serve.new TLSHub();
    List<ManagedChannel> channels = new ArrayList<>();
    try {
      channels.add(HubChannels.tls(tlsHub.addr, serve.token, tlsHub.ca));
      channels.add(HubChannels.tls(tlsHub.addr, null, tlsHub.ca));
      channels.add(HubChannels.tls(tlsHub.addr, serve.token, null));
      HubGrpc.HubBlockingStub trusted = HubGrpc.newBlockingStub(channels.get(0)).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS);
      assertEquals(0, trusted.listGateways(ListGatewaysRequest.getDefaultInstance()).getGatewaysCount());
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () ->
          HubGrpc.newBlockingStub(channels.get(1)).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
              .listGateways(ListGatewaysRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      // The system's roots do not know passerelle serve's development CA.
      e = assertThrows(StatusRuntimeException.class, () ->
          HubGrpc.newBlockingStub(channels.get(2)).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
              .listGateways(ListGatewaysRequest.getDefaultInstance()));
      assertEquals(e.toString(), Status.Code.UNAVAILABLE, e.getStatus().getCode());
    } finally {
      for (ManagedChannel c : channels) {
        c.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
      }
      tlsHub.close();
    }
  }

  @Test
  public void cancelledStream() throws Exception {
    String gateway = gatewayWithDevice("java-cancel");
    Context.CancellableContext ctx = Context.current().withCancellation();
    Iterator<SubscribeConfigResponse> configs = ctx.call(() ->
        hub().subscribeConfig(SubscribeConfigRequest.newBuilder().setGateway(gateway).setDeviceId("dev-1").build()));
    assertEquals(1, configs.next().getVersion()); // the current config: the stream holds the device attached
    assertEquals(List.of("dev-1"), attachedDevices(gateway));

    ctx.cancel(null);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, configs::hasNext);
    assertEquals(Status.Code.CANCELLED, e.getStatus().getCode());
    Serve.waitFor("the hub to detach the device of the cancelled stream", () -> attachedDevices(gateway).isEmpty());
  }

  @Test
  public void reconnectAfterHubRestart() throws Exception {
    String gateway = gatewayWithDevice("java-restart");
    BlockingQueue<Object> configs = new LinkedBlockingQueue<>();
    HubGrpc.newStub(channel).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS).subscribeConfig(
        SubscribeConfigRequest.newBuilder().setGateway(gateway).setDeviceId("dev-1").build(), observer(configs));
    assertTrue(configs.poll(TIMEOUT_S, TimeUnit.SECONDS) instanceof SubscribeConfigResponse);

    serve.restart();
    Object ended = configs.poll(TIMEOUT_S, TimeUnit.SECONDS);
    assertTrue("the stream ended with " + ended, ended instanceof Status);
    assertEquals(ended.toString(), Status.Code.UNAVAILABLE, ((Status) ended).getCode());

    // The same channel reconnects: the first call waits for it.
    List<String> names = new ArrayList<>();
    hub().withWaitForReady().listGateways(ListGatewaysRequest.getDefaultInstance()).getGatewaysList()
        .forEach(g -> names.add(g.getName()));
    assertTrue(names + " lacks " + gateway, names.contains(gateway));
    Context.CancellableContext ctx = Context.current().withCancellation();
    try {
      Iterator<SubscribeConfigResponse> again = ctx.call(() ->
          hub().subscribeConfig(SubscribeConfigRequest.newBuilder().setGateway(gateway).setDeviceId("dev-1").build()));
      assertEquals(1, again.next().getVersion());
    } finally {
      ctx.cancel(null);
    }
    BlockingQueue<Object> acks = new LinkedBlockingQueue<>();
    StreamObserver<PublishStateRequest> states = HubGrpc.newStub(channel).withDeadlineAfter(TIMEOUT_S, TimeUnit.SECONDS)
        .publishState(observer(acks));
    states.onNext(PublishStateRequest.newBuilder().setGateway(gateway).setDeviceId("dev-1")
        .setData(ByteString.copyFromUtf8("after-restart-" + System.nanoTime())).build());
    states.onCompleted();
    Object ack = acks.poll(TIMEOUT_S, TimeUnit.SECONDS);
    assertTrue("PublishState answered " + ack, ack instanceof PublishStateResponse);
    assertEquals(0, ((PublishStateResponse) ack).getIndex());
    assertEquals(Status.OK, acks.poll(TIMEOUT_S, TimeUnit.SECONDS));
    assertFalse(channel.isShutdown());
  }
}
