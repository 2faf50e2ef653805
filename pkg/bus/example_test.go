package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/passerelle-iot/passerelle/pkg/bus"
)

// A bridge stores an event; any JetStream client reads it back with its
// Cloud IoT attributes.
func Example() {
	dir, _ := os.MkdirTemp("", "bus-example")
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	b, err := bus.Open(ctx, slog.New(slog.DiscardHandler), bus.Options{DataDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	err = b.PublishNotification(ctx, "projects/my-project/topics/events", bus.KindEvent, []byte("21.5"),
		bus.Attributes{DeviceID: "thermo-1", DeviceNumID: "2820001", ProjectID: "my-project", SubFolder: "temperature"})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The consumer side: plain nats.go, nothing from Passerelle needed.
	js, _ := jetstream.New(b.Conn())
	cons, _ := js.OrderedConsumer(ctx, "PASSERELLE_PUBSUB", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"iot.pubsub.my-project.events"},
	})
	m, err := cons.Next()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Subject(), string(m.Data()), m.Headers().Get("iot-kind"), m.Headers().Get("deviceId"), m.Headers().Get("subFolder"))
	// Output: iot.pubsub.my-project.events 21.5 event thermo-1 temperature
}
