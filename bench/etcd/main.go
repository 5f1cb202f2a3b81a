// Command etcdbench runs the etcd side of bench/etcd.py: an etcd member
// (the real etcd server, embedded), and the two loads that bench/etcd.py
// also runs against distro, driven with etcd's own Go client.
//
//	etcdbench member --name n0 --dir D --client 127.0.0.1:P --peer 127.0.0.1:Q --cluster n0=http://...,n1=...
//	etcdbench load --at 127.0.0.1:P --others 127.0.0.1:P2,127.0.0.1:P3 -c 20 --pipeline 8 -m 500
//	etcdbench watch --at 127.0.0.1:P --watch 127.0.0.1:P3 --rate 50 --seconds 5
//
// member prints "ready" once the member serves, and stops on SIGTERM. load
// registers c x m instances at one member, each connection with a lease of
// its own (etcd's way of keeping an entry only while its client lives) and
// pipeline puts in flight, then waits until the other members show them all;
// it prints the times. watch writes one key at --rate writes/s at one member
// and watches it at another; it prints the write-to-event latencies. Every
// wait is bounded; only 127.0.0.1 is used.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

const timeout = 120 * time.Second

func main() {
	if len(os.Args) < 2 {
		fail("usage: etcdbench member|load|watch ...")
	}
	switch os.Args[1] {
	case "member":
		member(os.Args[2:])
	case "load":
		load(os.Args[2:])
	case "watch":
		watch(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(2)
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func loopbackURL(address string) url.URL {
	if !strings.HasPrefix(address, "127.0.0.1:") {
		fail("loopback addresses only: " + address)
	}
	u, err := url.Parse("http://" + address)
	check(err)
	return *u
}

func member(args []string) {
	fs := flag.NewFlagSet("member", flag.ExitOnError)
	name := fs.String("name", "", "member name")
	dir := fs.String("dir", "", "data directory")
	client := fs.String("client", "", "client address")
	peer := fs.String("peer", "", "peer address")
	cluster := fs.String("cluster", "", "initial cluster")
	check(fs.Parse(args))
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	clientURL, peerURL := loopbackURL(*client), loopbackURL(*peer)
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = *cluster
	cfg.InitialClusterToken = "etcdbench"
	cfg.ClusterState = embed.ClusterStateFlagNew
	// etcd's best case: no fsync (distro keeps its data in memory).
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	check(err)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(timeout):
		fail("member not ready in time")
	}
	fmt.Println("ready")
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-signals:
	case err := <-e.Err():
		check(err)
	}
	e.Close()
}

func connect(address string) *clientv3.Client {
	loopbackURL(address)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{address}, DialTimeout: 10 * time.Second})
	check(err)
	return c
}

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	at := fs.String("at", "", "member written to")
	others := fs.String("others", "", "members that must show every instance")
	connections := fs.Int("c", 20, "connections")
	pipeline := fs.Int("pipeline", 8, "puts in flight per connection")
	requests := fs.Int("m", 500, "registrations per connection")
	check(fs.Parse(args))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	clients := make([]*clientv3.Client, *connections)
	leases := make([]clientv3.LeaseID, *connections)
	for n := range clients {
		clients[n] = connect(*at)
		lease, err := clients[n].Grant(ctx, 600)
		check(err)
		leases[n] = lease.ID
	}
	started := time.Now()
	var wg sync.WaitGroup
	for n := range clients {
		for p := 0; p < *pipeline; p++ {
			wg.Add(1)
			go func(n, p int) {
				defer wg.Done()
				for i := p; i < *requests; i += *pipeline {
					ip := fmt.Sprintf("10.%d.%d.%d", n, i/256, i%256)
					key := fmt.Sprintf("/services/cpu-%d/%s:8080", n, ip)
					value := fmt.Sprintf(`{"ip":%q,"port":8080,"metadata":{"zone":"z1"}}`, ip)
					_, err := clients[n].Put(ctx, key, value, clientv3.WithLease(leases[n]))
					check(err)
				}
			}(n, p)
		}
	}
	wg.Wait()
	written := time.Since(started)
	total := int64(*connections * *requests)
	for _, address := range strings.Split(*others, ",") {
		c := connect(address)
		for {
			reply, err := c.Get(ctx, "/services/cpu-", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
			check(err)
			if reply.Count == total {
				break
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
	}
	visible := time.Since(started)
	for _, c := range clients {
		c.Close()
	}
	out, _ := json.Marshal(map[string]float64{"written": written.Seconds(), "visible": visible.Seconds()})
	fmt.Println(string(out))
}

func watch(args []string) {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	at := fs.String("at", "", "member written to")
	watched := fs.String("watch", "", "member watched at")
	rate := fs.Float64("rate", 50, "writes per second")
	seconds := fs.Float64("seconds", 5, "how long to write")
	check(fs.Parse(args))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	watcher := connect(*watched)
	events := watcher.Watch(ctx, "/latency/w", clientv3.WithCreatedNotify())
	if created := <-events; !created.Created {
		fail("watch not created")
	}
	writer := connect(*at)
	count := int(*rate * *seconds)
	sent := make([]time.Time, count)
	latencies := make([]float64, 0, count)
	done := make(chan struct{})
	var mu sync.Mutex
	go func() {
		defer close(done)
		for reply := range events {
			at := time.Now()
			for _, event := range reply.Events {
				seq, err := strconv.Atoi(string(event.Kv.Value))
				check(err)
				mu.Lock()
				latencies = append(latencies, at.Sub(sent[seq]).Seconds()*1000)
				n := len(latencies)
				mu.Unlock()
				if n == count {
					return
				}
			}
		}
	}()
	// Open loop, like bench/cluster.py's light writer: write n at n / rate.
	started := time.Now()
	var acks sync.WaitGroup
	for n := 0; n < count; n++ {
		if delay := time.Until(started.Add(time.Duration(float64(n) / *rate * float64(time.Second)))); delay > 0 {
			time.Sleep(delay)
		}
		mu.Lock()
		sent[n] = time.Now()
		mu.Unlock()
		acks.Add(1)
		go func(n int) {
			defer acks.Done()
			_, err := writer.Put(ctx, "/latency/w", strconv.Itoa(n))
			check(err)
		}(n)
	}
	acks.Wait()
	select {
	case <-done:
	case <-ctx.Done():
		fail("not every write was watched in time")
	}
	sort.Float64s(latencies)
	out, _ := json.Marshal(map[string]interface{}{"latencies_ms": latencies})
	fmt.Println(string(out))
}
