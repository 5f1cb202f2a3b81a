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
	ID        int               `json:"id"`
	Op        string            `json:"op"`
	Servers   string            `json:"servers"`
	Dir       string            `json:"dir"`
	Namespace string            `json:"namespace"`
	Username  *string           `json:"username"`
	Password  *string           `json:"password"`
	Service   string            `json:"service"`
	IP        string            `json:"ip"`
	Port      uint64            `json:"port"`
	Metadata  map[string]string `json:"metadata"`
	Ephemeral *bool             `json:"ephemeral"`
}

// ephemeral is the instance's: true unless the command says false.
func (c command) ephemeral() bool {
	return c.Ephemeral == nil || *c.Ephemeral
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
	namespace := c.Namespace
	if namespace == "" {
		namespace = "public"
	}
	options := []constant.ClientOption{
		constant.WithNamespaceId(namespace),
		constant.WithTimeoutMs(5000),
		constant.WithNotLoadCacheAtStart(true),
		constant.WithLogDir(c.Dir),
		constant.WithCacheDir(c.Dir),
		constant.WithLogLevel("info"),
	}
	if c.Username != nil {
		options = append(options, constant.WithUsername(*c.Username))
	}
	if c.Password != nil {
		options = append(options, constant.WithPassword(*c.Password))
	}
	config := constant.NewClientConfig(options...)
	return clients.NewNamingClient(vo.NacosClientParam{ClientConfig: config, ServerConfigs: servers})
}

// handle runs one command other than shutdown, answering it: an error (or a
// panic) of the SDK's is the answer's, never the end of the driver.
func handle(client *naming_client.INamingClient, c command) (result map[string]interface{}) {
	result = map[string]interface{}{"id": c.ID, "ok": true}
	var err error
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		if err != nil {
			result = map[string]interface{}{"id": c.ID, "ok": false, "error": err.Error()}
		}
	}()
	if c.Op != "start" && *client == nil {
		err = fmt.Errorf("not started")
		return
	}
	switch c.Op {
	case "start":
		*client, err = start(c)
	case "register":
		var done bool
		done, err = (*client).RegisterInstance(vo.RegisterInstanceParam{
			Ip: c.IP, Port: c.Port, ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
			Weight: 1, Enable: true, Healthy: true, Ephemeral: c.ephemeral(), Metadata: c.Metadata,
		})
		result["registered"] = done
	case "deregister":
		var done bool
		done, err = (*client).DeregisterInstance(vo.DeregisterInstanceParam{
			Ip: c.IP, Port: c.Port, ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
			Ephemeral: c.ephemeral(),
		})
		result["deregistered"] = done
	case "subscribe":
		service := c.Service
		err = (*client).Subscribe(&vo.SubscribeParam{
			ServiceName: service, GroupName: "DEFAULT_GROUP",
			SubscribeCallback: func(instances []model.Instance, err error) {
				emit(map[string]interface{}{"event": "push", "service": service, "hosts": hosts(instances)})
			},
		})
	case "list":
		var instances []model.Instance
		instances, err = (*client).SelectAllInstances(vo.SelectAllInstancesParam{
			ServiceName: c.Service, GroupName: "DEFAULT_GROUP",
		})
		result["hosts"] = hosts(instances)
	default:
		err = fmt.Errorf("unknown op %q", c.Op)
	}
	return
}

func main() {
	var client naming_client.INamingClient
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for scanner.Scan() {
		if strings.TrimSpace(scanner.Text()) == "" {
			continue
		}
		var c command
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			emit(map[string]interface{}{"id": nil, "ok": false, "error": err.Error()})
			continue
		}
		if c.Op == "shutdown" {
			if client != nil {
				client.CloseClient()
			}
			emit(map[string]interface{}{"id": c.ID, "ok": true})
			return
		}
		emit(handle(&client, c))
	}
}
