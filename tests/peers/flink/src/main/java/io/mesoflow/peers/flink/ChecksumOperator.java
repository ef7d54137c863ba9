package io.mesoflow.peers.flink;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * The checksum sink of docs/workloads.md: sums the FNV-1a-64 hash of every output line of its
 * subtask and, at end of input, emits {records, sum} once. The partial sums are operator state,
 * so a restore from a checkpoint continues them exactly.
 */
final class ChecksumOperator<T> extends AbstractStreamOperator<long[]>
        implements OneInputStreamOperator<T, long[]>, BoundedOneInput {

    /** Hashes one output record's canonical line. */
    @FunctionalInterface
    interface Hasher<T> extends Serializable {
        long hash(T value);
    }

    private final Hasher<T> hasher;
    private long records;
    private long sum;
    private transient ListState<Long> partial;

    ChecksumOperator(Hasher<T> hasher) {
        this.hasher = hasher;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        partial = context.getOperatorStateStore()
                .getListState(new ListStateDescriptor<>("checksum-partial", Types.LONG));
        List<Long> restored = new ArrayList<>();
        partial.get().forEach(restored::add);
        for (int i = 0; i + 1 < restored.size(); i += 2) {
            records += restored.get(i);
            sum += restored.get(i + 1);
        }
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        partial.update(List.of(records, sum));
    }

    @Override
    public void processElement(StreamRecord<T> element) {
        records++;
        sum += hasher.hash(element.getValue());
    }

    @Override
    public void endInput() {
        output.collect(new StreamRecord<>(new long[] {records, sum}));
    }
}
