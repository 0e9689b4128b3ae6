package chatglm;

import java.io.IOException;

/** The service refused a request or failed mid-stream; the message is the one the server sent. */
public final class ServerException extends IOException {
    private final int status;

    public ServerException(int status, String message) {
        super(message);
        this.status = status;
    }

    /** The HTTP status; 200 when the error arrived inside a stream that had already begun. */
    public int status() {
        return status;
    }
}
