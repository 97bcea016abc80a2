using System;

namespace Distillation.Demo.Plotting;

/// <summary>An 8-bit RGB colour.</summary>
internal readonly record struct Rgb(byte R, byte G, byte B)
{
    public static Rgb White => new(255, 255, 255);

    public static Rgb Black => new(0, 0, 0);

    /// <summary>A colour from 0xRRGGBB.</summary>
    public static Rgb Hex(int rgb) => new((byte)(rgb >> 16), (byte)(rgb >> 8), (byte)rgb);
}

/// <summary>
/// A small RGB raster with the few primitives a line chart needs: rectangles, anti-aliased thick lines (coverage
/// from the distance to the segment), and text in <see cref="BitmapFont"/> at an integer scale, horizontal or
/// rotated a quarter turn for a y-axis label. An optional clip rectangle limits lines to a plot area.
/// </summary>
internal sealed class Canvas
{
    private readonly byte[] _rgb;
    private (int X0, int Y0, int X1, int Y1)? _clip;

    public Canvas(int width, int height, Rgb background)
    {
        Width = width;
        Height = height;
        _rgb = new byte[width * height * 3];
        FillRectangle(0, 0, width, height, background);
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>The pixels, row-major, top row first, three bytes each.</summary>
    public ReadOnlySpan<byte> Pixels => _rgb;

    /// <summary>Restricts lines to [x0, x1) × [y0, y1), or lifts the restriction with null.</summary>
    public void Clip((int X0, int Y0, int X1, int Y1)? rectangle) => _clip = rectangle;

    public void FillRectangle(int x, int y, int width, int height, Rgb color)
    {
        for (int yy = Math.Max(0, y); yy < Math.Min(Height, y + height); yy++)
        {
            for (int xx = Math.Max(0, x); xx < Math.Min(Width, x + width); xx++)
            {
                Blend(xx, yy, color, 1);
            }
        }
    }

    /// <summary>The outline of a rectangle, one pixel wide.</summary>
    public void DrawRectangle(int x, int y, int width, int height, Rgb color)
    {
        FillRectangle(x, y, width, 1, color);
        FillRectangle(x, y + height - 1, width, 1, color);
        FillRectangle(x, y, 1, height, color);
        FillRectangle(x + width - 1, y, 1, height, color);
    }

    /// <summary>An anti-aliased segment of the given width (pixel centres at integer + 0.5).</summary>
    public void DrawLine(double x0, double y0, double x1, double y1, Rgb color, double width)
    {
        double half = width / 2;
        int minX = (int)Math.Floor(Math.Min(x0, x1) - half - 1), maxX = (int)Math.Ceiling(Math.Max(x0, x1) + half + 1);
        int minY = (int)Math.Floor(Math.Min(y0, y1) - half - 1), maxY = (int)Math.Ceiling(Math.Max(y0, y1) + half + 1);
        double dx = x1 - x0, dy = y1 - y0, length2 = (dx * dx) + (dy * dy);
        for (int y = minY; y <= maxY; y++)
        {
            for (int x = minX; x <= maxX; x++)
            {
                double px = x + 0.5 - x0, py = y + 0.5 - y0;
                double t = length2 == 0 ? 0 : Math.Clamp(((px * dx) + (py * dy)) / length2, 0, 1);
                double ex = px - (t * dx), ey = py - (t * dy);
                double coverage = Math.Clamp(half + 0.5 - Math.Sqrt((ex * ex) + (ey * ey)), 0, 1);
                if (coverage > 0)
                {
                    Blend(x, y, color, coverage);
                }
            }
        }
    }

    /// <summary>A dashed segment: dashes of <paramref name="dash"/> pixels separated by gaps of the same length.</summary>
    public void DrawDashedLine(double x0, double y0, double x1, double y1, Rgb color, double width, double dash)
    {
        double length = Math.Sqrt(((x1 - x0) * (x1 - x0)) + ((y1 - y0) * (y1 - y0)));
        for (double s = 0; s < length; s += 2 * dash)
        {
            double a = s / length, b = Math.Min(s + dash, length) / length;
            DrawLine(x0 + (a * (x1 - x0)), y0 + (a * (y1 - y0)), x0 + (b * (x1 - x0)), y0 + (b * (y1 - y0)), color, width);
        }
    }

    /// <summary>The width in pixels of <paramref name="text"/> at <paramref name="scale"/>.</summary>
    public static int TextWidth(string text, int scale) => text.Length == 0 ? 0 : ((text.Length * (BitmapFont.Width + 1)) - 1) * scale;

    /// <summary>The cap height in pixels at <paramref name="scale"/>.</summary>
    public static int TextHeight(int scale) => BitmapFont.Height * scale;

    /// <summary>Text with its top-left corner at (x, y); <paramref name="vertical"/> turns it a quarter turn anticlockwise (reading upwards from (x, y + width)).</summary>
    public void DrawText(int x, int y, string text, Rgb color, int scale, bool vertical = false)
    {
        int advance = (BitmapFont.Width + 1) * scale;
        int length = TextWidth(text, scale);
        for (int i = 0; i < text.Length; i++)
        {
            bool[,] glyph = BitmapFont.Glyph(text[i]);
            for (int r = 0; r < BitmapFont.Rows; r++)
            {
                for (int c = 0; c < BitmapFont.Width; c++)
                {
                    if (!glyph[r, c])
                    {
                        continue;
                    }

                    for (int sy = 0; sy < scale; sy++)
                    {
                        for (int sx = 0; sx < scale; sx++)
                        {
                            int u = (i * advance) + (c * scale) + sx, v = (r * scale) + sy; // position along and across the text
                            if (vertical)
                            {
                                SetText(x + v, y + length - 1 - u, color);
                            }
                            else
                            {
                                SetText(x + u, y + v, color);
                            }
                        }
                    }
                }
            }
        }
    }

    private void SetText(int x, int y, Rgb color)
    {
        if (x >= 0 && y >= 0 && x < Width && y < Height)
        {
            int i = ((y * Width) + x) * 3;
            _rgb[i] = color.R;
            _rgb[i + 1] = color.G;
            _rgb[i + 2] = color.B;
        }
    }

    private void Blend(int x, int y, Rgb color, double alpha)
    {
        if (x < 0 || y < 0 || x >= Width || y >= Height)
        {
            return;
        }

        if (_clip is { } c && (x < c.X0 || y < c.Y0 || x >= c.X1 || y >= c.Y1))
        {
            return;
        }

        int i = ((y * Width) + x) * 3;
        _rgb[i] = (byte)Math.Round((_rgb[i] * (1 - alpha)) + (color.R * alpha));
        _rgb[i + 1] = (byte)Math.Round((_rgb[i + 1] * (1 - alpha)) + (color.G * alpha));
        _rgb[i + 2] = (byte)Math.Round((_rgb[i + 2] * (1 - alpha)) + (color.B * alpha));
    }
}
