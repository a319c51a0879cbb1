// DynamoDB Local bound to 127.0.0.1 only. Its own command line has no bind-address option (Jetty listens on
// every interface), so this builds the server exactly as `java -jar DynamoDBLocal.jar ARGS` does, points its
// connector at loopback before it starts, and starts it without the start-up telemetry call.
// Run by tests/localstack/servers.py with Java's single-file source launcher (Java 17+):
//   java -Djava.library.path=LIB -cp DynamoDBLocal.jar:LIB/* LoopbackDynamoDBLocal.java -inMemory -port N ...
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost("127.0.0.1");
        }
        proxy.safeStart();
        System.out.println("DynamoDB Local listening on 127.0.0.1:" + ((ServerConnector) server.getConnectors()[0]).getLocalPort());
        proxy.join();
    }
}
