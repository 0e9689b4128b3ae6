package chatglm;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.time.Duration;
import java.util.function.Consumer;
import okhttp3.HttpUrl;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

/** A ChatGLM service's two streaming routes, handing each piece of the reply to a callback as it arrives. */
public final class ChatClient {
    /** What a streamed reply ended with. `usage` is null when the server sent none. */
    public record Reply(String finishReason, JsonObject usage, int keepAlives) {}

    /** Sampling settings; a null leaves the server's default. `ignoreEos` is only understood by /v1. */
    public record Options(Double temperature, Integer maxTokens, boolean ignoreEos) {}

    private static final MediaType JSON = MediaType.get("application/json; charset=utf-8");

    private final HttpUrl baseUrl;
    private final OkHttpClient http;

    public ChatClient(String baseUrl) {
        this.baseUrl = HttpUrl.get(baseUrl);
        // A slow model may be silent for long, but the server sends a keep-alive comment every 15 s
        // (its --keepalive), so a minute without a byte means the connection is gone.
        this.http = new OkHttpClient.Builder().readTimeout(Duration.ofSeconds(60)).build();
    }

    /** POST /stream, ChatGLM's own event stream: `delta` events, the last one with `finished: true`. */
    public Reply stream(String query, Options options, Consumer<String> onText) throws IOException {
        JsonObject body = new JsonObject();
        body.addProperty("query", query);
        body.add("history", new JsonArray());
        addSampling(body, options);

        try (Response response = post("/stream", body)) {
            SseReader events = new SseReader(response.body().byteStream());
            for (SseReader.Event event; (event = events.next()) != null; ) {
                JsonObject data = JsonParser.parseString(event.data()).getAsJsonObject();
                if (event.name().equals("error")) {
                    throw new ServerException(response.code(), errorMessage(data));
                }
                if (data.get("finished").getAsBoolean()) {
                    String reason = data.get("finish_reason").getAsString();
                    return new Reply(reason, data.getAsJsonObject("usage"), events.comments());
                }
                onText.accept(data.get("delta").getAsString());
            }
        }
        throw new IOException("the stream ended before its final event");
    }

    /** POST /v1/chat/completions with `stream: true`: OpenAI's chunks, then `data: [DONE]`. */
    public Reply streamOpenAi(String query, Options options, Consumer<String> onText) throws IOException {
        JsonObject message = new JsonObject();
        message.addProperty("role", "user");
        message.addProperty("content", query);
        JsonArray messages = new JsonArray();
        messages.add(message);
        JsonObject streamOptions = new JsonObject();
        streamOptions.addProperty("include_usage", true);

        JsonObject body = new JsonObject();
        body.addProperty("model", "chatglm");
        body.add("messages", messages);
        body.addProperty("stream", true);
        body.add("stream_options", streamOptions);
        addSampling(body, options);
        if (options.ignoreEos()) {
            body.addProperty("ignore_eos", true);
        }

        String finishReason = null;
        JsonObject usage = null;
        try (Response response = post("/v1/chat/completions", body)) {
            SseReader events = new SseReader(response.body().byteStream());
            for (SseReader.Event event; (event = events.next()) != null; ) {
                if (event.data().equals("[DONE]")) {
                    return new Reply(finishReason, usage, events.comments());
                }
                JsonObject chunk = JsonParser.parseString(event.data()).getAsJsonObject();
                if (chunk.has("error")) {
                    throw new ServerException(response.code(), errorMessage(chunk));
                }
                if (isPresent(chunk.get("usage"))) {
                    usage = chunk.getAsJsonObject("usage");
                }
                // The usage chunk has no choices; every other chunk has exactly one.
                for (JsonElement choice : chunk.getAsJsonArray("choices")) {
                    JsonObject delta = choice.getAsJsonObject().getAsJsonObject("delta");
                    if (isPresent(delta.get("content"))) {
                        onText.accept(delta.get("content").getAsString());
                    }
                    JsonElement reason = choice.getAsJsonObject().get("finish_reason");
                    if (isPresent(reason)) {
                        finishReason = reason.getAsString();
                    }
                }
            }
        }
        throw new IOException("the stream ended before data: [DONE]");
    }

    /** Only the settings given: the server refuses a null where it expects a number. */
    private static void addSampling(JsonObject body, Options options) {
        if (options.temperature() != null) {
            body.addProperty("temperature", options.temperature());
        }
        if (options.maxTokens() != null) {
            body.addProperty("max_tokens", options.maxTokens());
        }
    }

    /** Sends the request; a refusal (4xx, 5xx) becomes a ServerException with the server's message. */
    private Response post(String path, JsonObject body) throws IOException {
        Request request = new Request.Builder()
                .url(baseUrl.resolve(path))
                .header("Accept", "text/event-stream")
                .post(RequestBody.create(JSON, body.toString()))
                .build();
        Response response = http.newCall(request).execute();
        if (!response.isSuccessful()) {
            try (response) {
                String text = response.body().string();
                throw new ServerException(response.code(), "HTTP " + response.code() + ": " + errorMessage(text));
            }
        }
        return response;
    }

    /** `error.message` from the server's error object, or the raw text when it is not one (say, a proxy's page). */
    private static String errorMessage(String text) {
        try {
            return errorMessage(JsonParser.parseString(text).getAsJsonObject());
        } catch (JsonParseException | IllegalStateException e) {
            return text;
        }
    }

    private static String errorMessage(JsonObject body) {
        JsonElement error = body.get("error");
        if (error != null && error.isJsonObject() && isPresent(error.getAsJsonObject().get("message"))) {
            return error.getAsJsonObject().get("message").getAsString();
        }
        return body.toString();
    }

    private static boolean isPresent(JsonElement value) {
        return value != null && !value.isJsonNull();
    }
}
