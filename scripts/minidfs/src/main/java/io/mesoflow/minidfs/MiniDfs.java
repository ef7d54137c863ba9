package io.mesoflow.minidfs;

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.CountDownLatch;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import sun.misc.Signal;

/**
 * Runs a one-DataNode HDFS for mesoflow's checkpoint-storage tests until the process is killed.
 *
 * <pre>
 *   MiniDfs --data-dir DIR --uri-file FILE [--port N] [--format true|false]
 * </pre>
 *
 * <ul>
 *   <li>{@code --data-dir}: where the NameNode and DataNode keep their files.</li>
 *   <li>{@code --uri-file}: receives {@code hdfs://127.0.0.1:PORT} (written atomically) once the
 *       cluster is up, so a script can wait for the file instead of parsing logs.</li>
 *   <li>{@code --port}: the NameNode RPC port; 0 or absent picks a free one.</li>
 *   <li>{@code --format}: {@code true} (default) starts an empty file system; {@code false}
 *       reopens the one in {@code --data-dir}. Together with {@code --port} this restarts a
 *       stopped cluster where clients expect it, for "NameNode gone, then back" tests.</li>
 * </ul>
 *
 * Every socket is bound to 127.0.0.1: tests must not expose a file system without permissions on
 * the machine's other interfaces. SIGTERM shuts the cluster down cleanly and keeps the data.
 */
public final class MiniDfs {
    private static final String LOOPBACK = "127.0.0.1";

    private MiniDfs() {}

    public static void main(String[] args) throws Exception {
        String dataDir = null;
        String uriFile = null;
        int port = 0;
        boolean format = true;
        for (int i = 0; i < args.length; i++) {
            String flag = args[i];
            if (i + 1 >= args.length) {
                usage("missing value after " + flag);
            }
            String value = args[++i];
            switch (flag) {
                case "--data-dir" -> dataDir = value;
                case "--uri-file" -> uriFile = value;
                case "--port" -> port = parsePort(value);
                case "--format" -> format = parseBool(value);
                default -> usage("unknown argument " + flag);
            }
        }
        if (dataDir == null || uriFile == null) {
            usage("--data-dir and --uri-file are required");
        }
        if (port == 0) {
            port = freeLoopbackPort();
        }

        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(dataDir).getAbsolutePath());
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setInt("dfs.replication", 1);
        // Bind hosts: without these, a daemon given an address may still listen on the wildcard.
        for (String key : new String[] {
                "dfs.namenode.rpc-bind-host",
                "dfs.namenode.servicerpc-bind-host",
                "dfs.namenode.lifeline.rpc-bind-host",
                "dfs.namenode.http-bind-host",
                "dfs.namenode.https-bind-host"}) {
            conf.set(key, LOOPBACK);
        }
        for (String key : new String[] {
                "dfs.namenode.http-address",
                "dfs.namenode.https-address",
                "dfs.namenode.secondary.http-address",
                "dfs.namenode.secondary.https-address",
                "dfs.namenode.backup.address",
                "dfs.namenode.backup.http-address",
                "dfs.datanode.address",
                "dfs.datanode.http.address",
                "dfs.datanode.https.address",
                "dfs.datanode.ipc.address"}) {
            conf.set(key, LOOPBACK + ":0");
        }
        // The DataNode registers under this address; clients connect to what it reports.
        conf.set("dfs.datanode.hostname", LOOPBACK);
        // A restarted NameNode leaves safe mode as soon as the DataNode reports, not 30 s later.
        conf.setInt("dfs.namenode.safemode.extension", 0);
        // Quiet the web UIs' and metrics' extra listeners where possible.
        conf.setBoolean("dfs.webhdfs.enabled", false);

        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .numDataNodes(1)
                .nameNodePort(port)
                .nameNodeHttpPort(0)
                .format(format)
                // Use the addresses set above for the DataNode rather than the builder's defaults.
                .checkDataNodeAddrConfig(true)
                .build();
        cluster.waitActive();

        // SIGTERM/SIGINT only release the main thread, which shuts the cluster down while the
        // JVM is still running normally: shutting it down from a JVM shutdown hook fails, since
        // Hadoop's daemons remove hooks of their own as they stop.
        CountDownLatch stop = new CountDownLatch(1);
        for (String name : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(name), signal -> stop.countDown());
        }
        String uri = "hdfs://" + LOOPBACK + ":" + cluster.getNameNodePort();
        writeAtomically(Path.of(uriFile), uri + "\n");
        System.err.println("minidfs: up at " + uri + " (data in " + dataDir + ")");
        stop.await();
        System.err.println("minidfs: shutting down");
        // Stop the daemons one by one rather than with cluster.shutdown(): even when asked to keep
        // the data, that schedules the whole directory for deletion at JVM exit, and a restart
        // with --format false must find the file system where it was.
        cluster.shutdownDataNodes();
        cluster.shutdownNameNodes();
        System.err.println("minidfs: stopped");
        System.exit(0);
    }

    private static int freeLoopbackPort() throws IOException {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress(LOOPBACK, 0));
            return s.getLocalPort();
        }
    }

    private static void writeAtomically(Path target, String text) throws IOException {
        Path dir = target.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, "." + target.getFileName(), ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    private static int parsePort(String value) {
        try {
            int p = Integer.parseInt(value);
            if (p >= 0 && p <= 65535) {
                return p;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        usage("--port must be 0..65535, got " + value);
        return 0;
    }

    private static boolean parseBool(String value) {
        return switch (value) {
            case "true" -> true;
            case "false" -> false;
            default -> {
                usage("--format must be true or false, got " + value);
                yield true;
            }
        };
    }

    private static void usage(String problem) {
        System.err.println("minidfs: " + problem);
        System.err.println(
                "usage: MiniDfs --data-dir DIR --uri-file FILE [--port N] [--format true|false]");
        System.exit(2);
    }
}
