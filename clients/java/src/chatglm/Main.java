package chatglm;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** Streams one reply to stdout, exactly as UTF-8 and piece by piece; everything else goes to stderr. */
public final class Main {
    private static final String USAGE = String.join("\n",
            "usage: java chatglm.Main [--url URL] [--api stream|openai] [--temperature T] [--max-tokens N]",
            "                         [--ignore-eos] QUERY",
            "  --url          the service (default http://127.0.0.1:8800)",
            "  --api          stream: POST /stream (default); openai: POST /v1/chat/completions",
            "  --temperature  0 for greedy decoding",
            "  --ignore-eos   keep generating through end-of-sequence tokens (openai only)");

    public static void main(String[] args) {
        // Java 17 encodes System.out and System.err in the locale's charset, which is ASCII on a bare
        // machine: a reply would turn into question marks. These streams write UTF-8 whatever the locale.
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        PrintStream err = new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8);

        String url = "http://127.0.0.1:8800";
        String api = "stream";
        Double temperature = null;
        Integer maxTokens = null;
        boolean ignoreEos = false;
        List<String> queries = new ArrayList<>();
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "--url" -> url = args[++i];
                    case "--api" -> api = args[++i];
                    case "--temperature" -> temperature = Double.parseDouble(args[++i]);
                    case "--max-tokens" -> maxTokens = Integer.parseInt(args[++i]);
                    case "--ignore-eos" -> ignoreEos = true;
                    default -> queries.add(args[i]);
                }
            }
        } catch (NumberFormatException | ArrayIndexOutOfBoundsException e) {
            queries.clear();
        }
        if (queries.size() != 1 || queries.get(0).startsWith("--") || !List.of("stream", "openai").contains(api)) {
            err.println(USAGE);
            System.exit(2);
        }
        String query = queries.get(0);

        ChatClient client = new ChatClient(url);
        ChatClient.Options options = new ChatClient.Options(temperature, maxTokens, ignoreEos);
        try {
            ChatClient.Reply reply = api.equals("openai")
                    ? client.streamOpenAi(query, options, text -> print(out, text))
                    : client.stream(query, options, text -> print(out, text));
            // The reply has no trailing newline of its own; this one goes to stderr, so stdout stays exact.
            err.printf("%n[finish_reason: %s, usage: %s, keep-alive comments: %d]%n",
                    reply.finishReason(), reply.usage(), reply.keepAlives());
        } catch (ServerException e) {
            err.println("error: " + e.getMessage());
            System.exit(1);
        } catch (IOException e) {
            err.println("error: " + e);
            System.exit(1);
        }
    }

    private static void print(PrintStream out, String text) {
        out.print(text);
        out.flush();
    }
}
