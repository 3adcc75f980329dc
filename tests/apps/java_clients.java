// Java HTTP clients for tests/runtimes.rs, run as a single-file program
// (`java java_clients.java MODE ...`).
//
// urlconnection PLAIN_BASE TLS_BASE CERT: two GETs with HttpURLConnection
//   (keep-alive), then one over HTTPS (JSSE) trusting CERT.
// httpclient PLAIN_BASE: java.net.http.HttpClient, HTTP/1.1, eight clients
//   of three keep-alive GETs each (the response is read on another thread
//   than the one that wrote the request).
import java.io.FileInputStream;
import java.net.HttpURLConnection;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class JavaClients {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("urlconnection")) {
            for (String path : new String[] {"/len/1", "/len/2"}) {
                HttpURLConnection c = (HttpURLConnection) new URL(args[1] + path).openConnection();
                System.out.println(c.getResponseCode() + " " + c.getInputStream().readAllBytes().length);
            }
            KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
            ks.load(null, null);
            try (FileInputStream in = new FileInputStream(args[3])) {
                ks.setCertificateEntry("test", CertificateFactory.getInstance("X.509").generateCertificate(in));
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(ks);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(null, tmf.getTrustManagers(), null);
            HttpsURLConnection s = (HttpsURLConnection) new URL(args[2] + "/len/3").openConnection();
            s.setSSLSocketFactory(ctx.getSocketFactory());
            System.out.println(s.getResponseCode() + " " + s.getInputStream().readAllBytes().length);
        } else {
            for (int client = 0; client < 8; client++) {
                HttpClient c = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
                for (int i = 1; i <= 3; i++) {
                    URI uri = URI.create(args[1] + "/len/" + (client * 3 + i));
                    HttpResponse<String> r = c.send(HttpRequest.newBuilder(uri).build(), HttpResponse.BodyHandlers.ofString());
                    System.out.println(r.statusCode() + " " + r.body().length());
                }
            }
        }
    }
}
