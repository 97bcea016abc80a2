using System;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Distillation;

/// <summary>Writes a <see cref="Divergence"/> as <c>{"kind": "GeneralizedJsd", "parameter": 0.5}</c> and reads it back through the validating factories.</summary>
public sealed class DivergenceJsonConverter : JsonConverter<Divergence>
{
    /// <inheritdoc />
    public override Divergence Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("A divergence is an object with \"kind\" and, for JSD and the skew KLs, \"parameter\".");
        }

        DivergenceKind? kind = null;
        double parameter = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            string name = reader.GetString() ?? string.Empty;
            reader.Read();
            if (name.Equals("kind", StringComparison.OrdinalIgnoreCase))
            {
                string? text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                kind = text is not null && !text.Contains(',', StringComparison.Ordinal) && Enum.TryParse(text, ignoreCase: true, out DivergenceKind k)
                    && Enum.IsDefined(k) && k != DivergenceKind.Unspecified
                    ? k
                    : throw new JsonException($"Unknown divergence kind: {(text is null ? reader.TokenType.ToString() : "'" + text + "'")}.");
            }
            else if (name.Equals("parameter", StringComparison.OrdinalIgnoreCase))
            {
                parameter = reader.TokenType == JsonTokenType.Number ? reader.GetDouble() : throw new JsonException("A divergence's \"parameter\" must be a number.");
            }
            else
            {
                reader.Skip();
            }
        }

        try
        {
            return kind switch
            {
                DivergenceKind.ForwardKL => Divergence.ForwardKL,
                DivergenceKind.ReverseKL => Divergence.ReverseKL,
                DivergenceKind.SoftCrossEntropy => Divergence.SoftCrossEntropy,
                DivergenceKind.TotalVariation => Divergence.TotalVariation,
                DivergenceKind.GeneralizedJsd => Divergence.GeneralizedJsd(parameter),
                DivergenceKind.SkewKL => Divergence.SkewKL(parameter),
                DivergenceKind.SkewReverseKL => Divergence.SkewReverseKL(parameter),
                _ => throw new JsonException("A divergence needs a \"kind\"."),
            };
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, Divergence value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString("kind", value.Kind.ToString());
        if (value.Kind is DivergenceKind.GeneralizedJsd or DivergenceKind.SkewKL or DivergenceKind.SkewReverseKL)
        {
            writer.WriteNumber("parameter", value.Parameter);
        }

        writer.WriteEndObject();
    }
}
