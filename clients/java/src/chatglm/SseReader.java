package chatglm;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

/**
 * Reads a text/event-stream by the WHATWG parsing rules: `event:` names, `data:` lines joined with
 * line feeds, comments skipped, a blank line ending each event. `id:` and `retry:` only matter for
 * reconnecting, which this client does not do, so they are ignored.
 */
public final class SseReader {
    public record Event(String name, String data) {}

    // BufferedReader.readLine ends a line at CRLF, LF or CR: exactly the line ends SSE allows.
    private final BufferedReader lines;
    private boolean firstLine = true;
    private int comments;

    public SseReader(InputStream body) {
        lines = new BufferedReader(new InputStreamReader(body, StandardCharsets.UTF_8));
    }

    /** The next event, or null when the stream ends; an unfinished last event is dropped, as the spec says. */
    public Event next() throws IOException {
        String name = "";
        StringBuilder data = null;
        for (String line; (line = lines.readLine()) != null; ) {
            if (firstLine && line.startsWith("\uFEFF")) {
                line = line.substring(1);
            }
            firstLine = false;
            if (line.isEmpty()) {
                if (data != null) {
                    return new Event(name.isEmpty() ? "message" : name, data.toString());
                }
                name = "";
            } else if (line.startsWith(":")) {
                comments++;
            } else {
                int colon = line.indexOf(':');
                String field = colon < 0 ? line : line.substring(0, colon);
                String value = colon < 0 ? "" : line.substring(colon + 1);
                if (value.startsWith(" ")) {
                    value = value.substring(1);
                }
                if (field.equals("event")) {
                    name = value;
                } else if (field.equals("data")) {
                    data = data == null ? new StringBuilder(value) : data.append('\n').append(value);
                }
            }
        }
        return null;
    }

    /** Comment lines seen so far: the server's `: ping` keep-alives. */
    public int comments() {
        return comments;
    }
}
