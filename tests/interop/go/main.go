// Command driver drives the official Nacos Go SDK (nacos-sdk-go v2,
// unmodified) for the interop tests, with the commands and events of
// tests/interop/python_driver.py: JSON objects, one per line, commands on
// stdin, answers and events on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
)

type command struct {
	ID       int               `json:"id"`
	Op       string            `json:"op"`
	Servers  string            `json:"servers"`
	Dir      string            `json:"dir"`
	Service  string            `json:"service"`
	IP       string            `json:"ip"`
	Port     uint64            `json:"port"`
	Metadata map[string]string `json:"metadata"`
}

var out sync.Mutex

func emit(message map[string]interface{}) {
	data, _ := json.Marshal(message)
	out.Lock()
	defer out.Unlock()
	os.Stdout.Write(append(data, '\n'))
}

func hosts(instances []model.Instance) [][]interface{} {
	list := [][]interface{}{}
	for _, i := range instances {
		list = append(list, []interface{}{i.Ip, i.Port})
	}
	sort.Slice(list, func(a, b int) bool {
		return fmt.Sprint(list[a]) < fmt.Sprint(list[b])
	})
	return list
}

func start(c command) (naming_client.INamingClient, error) {
	var servers []constant.ServerConfig
	for _, address := range strings.Split(c.Servers, ",") {
		host, port, _ := strings.Cut(address, ":")
		number, err := strconv.ParseUint(port, 10, 64)
		if err != nil {
			return nil, err
		}
		servers = append(servers, *constant.NewServerConfig(host, number))
	}
	config := constant.NewClientConfig(
		constant.WithNamespaceId("public"),
		constant.WithTimeoutMs(5000),
		constant.WithNotLoadCacheAtStart(true),
		constant.WithLogDir(c.Dir),
		constant.WithCacheDir(c.Dir),
		constant.WithLogLevel("info"),
	)
	return clients.NewNamingClient(vo.NacosClientParam{ClientConfig: config, ServerConfigs: servers})
}

func main() {
	var client naming_client.INamingClient
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		var c command
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			emit(map[string]interface{}{"ok": false, "error": err.Error()})
			continue
		}
		result := map[string]interface{}{"id": c.ID, "ok": true}
		var err error
		switch c.Op {
		case "start":
			client, err = start(c)
		case "register":
			var done bool
			done, err = client.RegisterInstance(vo.RegisterInstanceParam{
				Ip: c.IP, Port: c.Port, ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
				Weight: 1, Enable: true, Healthy: true, Ephemeral: true, Metadata: c.Metadata,
			})
			result["registered"] = done
		case "deregister":
			var done bool
			done, err = client.DeregisterInstance(vo.DeregisterInstanceParam{
				Ip: c.IP, Port: c.Port, ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
				Ephemeral: true,
			})
			result["deregistered"] = done
		case "subscribe":
			service := c.Service
			err = client.Subscribe(&vo.SubscribeParam{
				ServiceName: service, GroupName: "DEFAULT_GROUP",
				SubscribeCallback: func(instances []model.Instance, err error) {
					emit(map[string]interface{}{"event": "push", "service": service, "hosts": hosts(instances)})
				},
			})
		case "list":
			var instances []model.Instance
			instances, err = client.SelectAllInstances(vo.SelectAllInstancesParam{
				ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
			})
			result["hosts"] = hosts(instances)
		case "shutdown":
			if client != nil {
				client.CloseClient()
			}
			emit(result)
			return
		default:
			err = fmt.Errorf("unknown op %q", c.Op)
		}
		if err != nil {
			result = map[string]interface{}{"id": c.ID, "ok": false, "error": err.Error()}
		}
		emit(result)
	}
}
