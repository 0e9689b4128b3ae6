import chatglm.SseReader;
import com.google.gson.JsonObject;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/** For the tests: the events the client's SseReader finds on stdin, one JSON object a line. */
public final class SseDump {
    public static void main(String[] args) throws IOException {
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        SseReader reader = new SseReader(System.in);
        for (SseReader.Event event; (event = reader.next()) != null; ) {
            JsonObject line = new JsonObject();
            line.addProperty("name", event.name());
            line.addProperty("data", event.data());
            out.println(line);
        }
        out.println("comments: " + reader.comments());
    }
}
