#!/bin/sh
# Regenerates the WebM test clips used by ownstream-core's chunker tests and benches.
#
# Every clip is synthetic (lavfi testsrc2 + sine), so it carries no third-party content and is
# reproducible with any ffmpeg that has libvpx, libvorbis and libopus (measured with ffmpeg 5.1).
# `-bitexact` and `-fflags +bitexact` keep encoder version strings out of the files so diffs stay
# small; the expected packet counts in core/tests/webm_clips/mod.rs come from `ffprobe -count_packets`
# (see the end of this script) and must be updated if the clips are regenerated with other settings.
set -eu
cd "$(dirname "$0")"

common_in() {
    # $1 = size, $2 = duration in seconds
    echo "-f lavfi -i testsrc2=size=$1:rate=30:duration=$2 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=$2"
}

# 1. Written to a seekable file: known-size Segment and Clusters, one keyframe-first cluster per
#    second because the GOP is fixed at 30 frames and the muxer starts a cluster at each keyframe.
ffmpeg -v error -y $(common_in 320x240 8) \
    -c:v libvpx -g 30 -keyint_min 30 -b:v 200k -c:a libvorbis -ar 48000 -b:a 64k \
    -fflags +bitexact -f webm clip-keyframe-clusters.webm

# 2. Same content written to a pipe: an unknown-size Segment, and clusters that mostly do NOT
#    start on a keyframe. At 720p, ffmpeg's pipe default (32 KB clusters) gives ~250 ms clusters;
#    at this clip's 25 KB/s a GOP fits in 32 KB, so a 330 ms time limit reproduces the pattern:
#    ~3 clusters per GOP, the keyframe usually in the middle of one. (ffmpeg 5.1 buffers each
#    cluster, so clusters still carry known sizes; the tests also rewrite them to unknown sizes,
#    as a browser's MediaRecorder writes them.)
ffmpeg -v error -y $(common_in 320x240 8) \
    -c:v libvpx -g 30 -keyint_min 30 -b:v 200k -c:a libvorbis -ar 48000 -b:a 64k \
    -cluster_time_limit 330 -fflags +bitexact -f webm - > clip-pipe.webm

# 3. One cluster of more than 2 MiB (~2.3 MB): temporal noise defeats VP8's compression so the 8 Mbit/s
#    target is met, and -g/-keyint_min 300 leave a single keyframe, so the muxer never starts a
#    second cluster before its 3 MB / 10 s limits.
ffmpeg -v error -y -f lavfi -i "testsrc2=size=640x480:rate=30:duration=2.5,noise=alls=30:allf=t" \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=2.5 \
    -c:v libvpx -g 300 -keyint_min 300 -b:v 8M -minrate 8M -maxrate 8M -bufsize 8M \
    -c:a libvorbis -ar 48000 \
    -cluster_size_limit 3M -cluster_time_limit 10000 \
    -fflags +bitexact -f webm clip-big-clusters.webm

# 4. The codecs of a browser's MediaRecorder: VP8 + Opus (48 kHz), keyframe-first clusters.
ffmpeg -v error -y $(common_in 320x240 6) \
    -c:v libvpx -g 30 -keyint_min 30 -b:v 200k -c:a libopus -b:a 64k \
    -fflags +bitexact -f webm clip-opus.webm

# Expected per-stream packet counts (copy them into core/tests/webm_clips/mod.rs).
for f in clip-keyframe-clusters.webm clip-pipe.webm clip-big-clusters.webm clip-opus.webm; do
    printf '%s: ' "$f"
    ffprobe -v error -count_packets -show_entries stream=index,codec_type,nb_read_packets \
        -of csv=p=0 "$f" | tr '\n' ' '
    echo
done
