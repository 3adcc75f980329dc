import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/**
 * Several requests over one keep-alive connection with java.net.http.HttpClient,
 * which writes a request on the calling thread and reads its response on its
 * selector thread. argv: PORT N. Prints one line per response: status, body length.
 */
public class JavaKeepAlive {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        int n = Integer.parseInt(args[1]);
        for (int i = 0; i < n; i++) {
            HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + args[0] + "/len/" + (10 + i))).build();
            HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
            System.out.println(resp.statusCode() + " " + resp.body().length());
        }
    }
}
