package distro.interop;

import com.alibaba.nacos.api.PropertyKeyConst;
import com.alibaba.nacos.api.naming.NamingFactory;
import com.alibaba.nacos.api.naming.NamingService;
import com.alibaba.nacos.api.naming.listener.NamingEvent;
import com.alibaba.nacos.api.naming.pojo.Instance;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Drives the official Nacos Java client (nacos-client 2.x or 3.x,
 * unmodified: the same source builds against both) for the interop tests,
 * with the commands and events of tests/interop/python_driver.py: JSON
 * objects, one per line, commands on stdin, answers and events on stdout.
 */
public final class Driver {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static synchronized void emit(ObjectNode message) {
        System.out.println(message.toString());
        System.out.flush();
    }

    private static ArrayNode hosts(List<Instance> instances) {
        List<Instance> sorted = new ArrayList<>(instances);
        sorted.sort((a, b) -> (a.getIp() + ":" + a.getPort()).compareTo(b.getIp() + ":" + b.getPort()));
        ArrayNode list = JSON.createArrayNode();
        for (Instance i : sorted) {
            list.add(JSON.createArrayNode().add(i.getIp()).add(i.getPort()));
        }
        return list;
    }

    public static void main(String[] args) throws Exception {
        NamingService naming = null;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            ObjectNode command = (ObjectNode) JSON.readTree(line);
            ObjectNode result = JSON.createObjectNode();
            result.put("id", command.path("id").asInt());
            result.put("ok", true);
            String op = command.path("op").asText();
            String service = command.path("service").asText();
            try {
                switch (op) {
                    case "start": {
                        Properties properties = new Properties();
                        properties.setProperty(PropertyKeyConst.SERVER_ADDR, command.path("servers").asText());
                        properties.setProperty(PropertyKeyConst.NAMESPACE,
                                command.path("namespace").asText("public"));
                        if (command.hasNonNull("username")) {
                            properties.setProperty(PropertyKeyConst.USERNAME, command.get("username").asText());
                        }
                        if (command.hasNonNull("password")) {
                            properties.setProperty(PropertyKeyConst.PASSWORD, command.get("password").asText());
                        }
                        naming = NamingFactory.createNamingService(properties);
                        break;
                    }
                    case "register": {
                        Instance instance = new Instance();
                        instance.setIp(command.path("ip").asText());
                        instance.setPort(command.path("port").asInt());
                        instance.setEphemeral(command.path("ephemeral").asBoolean(true));
                        if (command.has("metadata")) {
                            instance.setMetadata(JSON.convertValue(command.get("metadata"), Map.class));
                        }
                        naming.registerInstance(service, "DEFAULT_GROUP", instance);
                        result.put("registered", true);
                        break;
                    }
                    case "deregister": {
                        Instance instance = new Instance();
                        instance.setIp(command.path("ip").asText());
                        instance.setPort(command.path("port").asInt());
                        instance.setClusterName("DEFAULT");
                        instance.setEphemeral(command.path("ephemeral").asBoolean(true));
                        naming.deregisterInstance(service, "DEFAULT_GROUP", instance);
                        result.put("deregistered", true);
                        break;
                    }
                    case "subscribe":
                        naming.subscribe(service, "DEFAULT_GROUP", event -> {
                            if (event instanceof NamingEvent) {
                                ObjectNode push = JSON.createObjectNode();
                                push.put("event", "push");
                                push.put("service", service);
                                push.set("hosts", hosts(((NamingEvent) event).getInstances()));
                                emit(push);
                            }
                        });
                        break;
                    case "list":
                        result.set("hosts", hosts(naming.getAllInstances(service, "DEFAULT_GROUP", false)));
                        break;
                    case "shutdown":
                        if (naming != null) {
                            naming.shutDown();
                        }
                        emit(result);
                        System.exit(0);
                        return;
                    default:
                        throw new IllegalArgumentException("unknown op " + op);
                }
            } catch (Exception e) {
                result.put("ok", false);
                result.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
            }
            emit(result);
        }
        System.exit(0);
    }
}
