using System.IO;
using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Distillation.Tests;

/// <summary>The PyTorch float64 reference values (Data/kd_reference.json.gz, copied from the shared reference).</summary>
public static class ReferenceData
{
    private static readonly Lazy<Root> Loaded = new(Load);

    public static IReadOnlyList<TokenCase> TokenCases => Loaded.Value.TokenCases;

    public static IReadOnlyList<SequenceCase> SequenceCases => Loaded.Value.SequenceCases;

    public static TokenCase Token(string name) => TokenCases.Single(c => c.Name == name);

    private static Root Load()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Data", "kd_reference.json.gz");
        using var file = File.OpenRead(path);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        return JsonSerializer.Deserialize<Root>(gzip, RootOptions) ?? throw new InvalidDataException("empty reference file");
    }

    public sealed class Root
    {
        [JsonPropertyName("token_cases")]
        public List<TokenCase> TokenCases { get; set; } = [];

        [JsonPropertyName("sequence_cases")]
        public List<SequenceCase> SequenceCases { get; set; } = [];
    }

    public sealed class TokenCase
    {
        public string Name { get; set; } = "";

        public int Rows { get; set; }

        public int Vocab { get; set; }

        public double Temperature { get; set; }

        [JsonPropertyName("teacher_logits")]
        public float[] TeacherLogits { get; set; } = [];

        [JsonPropertyName("student_logits")]
        public float[] StudentLogits { get; set; } = [];

        public int[]? Labels { get; set; }

        public Dictionary<string, JsonElement> Expected { get; set; } = [];

        public double[] Values(string key) => Expected[key].Deserialize<double[]>(Options)!;

        public double[]? Gradient(string key) =>
            Expected.TryGetValue(key + "_grad", out JsonElement e) && e.ValueKind != JsonValueKind.Null ? e.Deserialize<double[]>(Options) : null;

        public double? Scalar(string key) =>
            Expected.TryGetValue(key, out JsonElement e) && e.ValueKind != JsonValueKind.Null ? e.Deserialize<double>(Options) : null;

        public override string ToString() => Name;
    }

    public sealed class SequenceCase
    {
        public string Name { get; set; } = "";

        public int Vocab { get; set; }

        public int Length { get; set; }

        public double Temperature { get; set; }

        public int[][] Prefixes { get; set; } = [];

        [JsonPropertyName("teacher_logits")]
        public float[] TeacherLogits { get; set; } = [];

        [JsonPropertyName("student_logits")]
        public float[] StudentLogits { get; set; } = [];

        public int[][] Sequences { get; set; } = [];

        [JsonPropertyName("teacher_seq_logprob")]
        public double[] TeacherSeqLogprob { get; set; } = [];

        [JsonPropertyName("student_seq_logprob")]
        public double[] StudentSeqLogprob { get; set; } = [];

        public Dictionary<string, double> Expected { get; set; } = [];

        public override string ToString() => Name;
    }

    private static readonly JsonSerializerOptions Options = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    private static readonly JsonSerializerOptions RootOptions = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals | JsonNumberHandling.AllowReadingFromString,
        PropertyNameCaseInsensitive = true,
    };
}
