using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace Distillation.Demo.Plotting;

/// <summary>One line of a chart: its legend label, colour, points and whether it is dashed (a reference level).</summary>
internal sealed record Series(string Label, Rgb Color, IReadOnlyList<(double X, double Y)> Points, bool Dashed = false);

/// <summary>One panel: a title, axis labels and its lines; <see cref="YFromZero"/> starts the y axis at 0.</summary>
internal sealed record Panel(string Title, string XLabel, string YLabel, IReadOnlyList<Series> Series, bool YFromZero = false);

/// <summary>
/// Renders panels side by side, with one legend below them, into a PNG: axes with "nice" ticks, grid lines, the
/// series, titles and labels. Every series label appears once in the legend, whichever panels it is drawn in.
/// </summary>
internal static class LineChart
{
    private const int Scale = 2;             // font scale: 12-pixel advance, 14-pixel cap height
    private const int PanelWidth = 640;
    private const int PanelHeight = 520;
    private const int TitleHeight = 56;
    private const int LegendRowHeight = 30;
    private static readonly Rgb Ink = Rgb.Hex(0x222222);
    private static readonly Rgb Grid = Rgb.Hex(0xE4E4E4);
    private static readonly Rgb Frame = Rgb.Hex(0x888888);

    public static void Write(string path, string title, IReadOnlyList<Panel> panels)
    {
        var legend = new List<Series>();
        var seen = new HashSet<string>();
        foreach (Panel panel in panels)
        {
            foreach (Series s in panel.Series)
            {
                if (seen.Add(s.Label))
                {
                    legend.Add(s);
                }
            }
        }

        int width = PanelWidth * panels.Count;
        List<List<Series>> rows = LegendRows(legend, width - 40);
        int height = TitleHeight + PanelHeight + 16 + (rows.Count * LegendRowHeight) + 10;
        var canvas = new Canvas(width, height, Rgb.White);
        canvas.DrawText((width - Canvas.TextWidth(title, Scale + 1)) / 2, 16, title, Ink, Scale + 1);

        for (int p = 0; p < panels.Count; p++)
        {
            DrawPanel(canvas, panels[p], p * PanelWidth, TitleHeight);
        }

        int y = TitleHeight + PanelHeight + 16;
        foreach (List<Series> row in rows)
        {
            int rowWidth = 0;
            foreach (Series s in row)
            {
                rowWidth += LegendEntryWidth(s);
            }

            int x = (width - rowWidth) / 2;
            foreach (Series s in row)
            {
                int mid = y + (Canvas.TextHeight(Scale) / 2);
                if (s.Dashed)
                {
                    canvas.DrawDashedLine(x, mid, x + 36, mid, s.Color, 2.5, 6);
                }
                else
                {
                    canvas.DrawLine(x, mid, x + 36, mid, s.Color, 3);
                }

                canvas.DrawText(x + 44, y, s.Label, Ink, Scale);
                x += LegendEntryWidth(s);
            }

            y += LegendRowHeight;
        }

        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
        }

        PngWriter.Write(path, canvas.Width, canvas.Height, canvas.Pixels);
    }

    private static int LegendEntryWidth(Series s) => 44 + Canvas.TextWidth(s.Label, Scale) + 32;

    private static List<List<Series>> LegendRows(List<Series> legend, int maxWidth)
    {
        var rows = new List<List<Series>> { new() };
        int used = 0;
        foreach (Series s in legend)
        {
            int w = LegendEntryWidth(s);
            if (used + w > maxWidth && rows[^1].Count > 0)
            {
                rows.Add([]);
                used = 0;
            }

            rows[^1].Add(s);
            used += w;
        }

        return rows;
    }

    private static void DrawPanel(Canvas canvas, Panel panel, int left, int top)
    {
        // The plot area inside the panel: room for the title above, tick labels and axis labels left and below.
        int x0 = left + 100, x1 = left + PanelWidth - 40, y0 = top + 36, y1 = top + PanelHeight - 64;

        double xMin = double.PositiveInfinity, xMax = double.NegativeInfinity, yMin = double.PositiveInfinity, yMax = double.NegativeInfinity;
        foreach (Series s in panel.Series)
        {
            foreach ((double x, double y) in s.Points)
            {
                xMin = Math.Min(xMin, x);
                xMax = Math.Max(xMax, x);
                yMin = Math.Min(yMin, y);
                yMax = Math.Max(yMax, y);
            }
        }

        if (panel.YFromZero)
        {
            yMin = 0;
        }

        (double xLo, double xHi, double xStep) = NiceRange(xMin, xMax);
        (double yLo, double yHi, double yStep) = NiceRange(yMin, yMax);
        double Px(double x) => x0 + ((x - xLo) / (xHi - xLo) * (x1 - x0));
        double Py(double y) => y1 - ((y - yLo) / (yHi - yLo) * (y1 - y0));

        canvas.DrawText(left + ((PanelWidth - Canvas.TextWidth(panel.Title, Scale)) / 2), top + 4, panel.Title, Ink, Scale);

        // Grid and tick labels.
        for (double y = yLo; y <= yHi + (yStep / 2); y += yStep)
        {
            int py = (int)Math.Round(Py(y));
            canvas.FillRectangle(x0, py, x1 - x0, 1, Grid);
            string label = Format(y, yStep);
            canvas.DrawText(x0 - 8 - Canvas.TextWidth(label, Scale), py - (Canvas.TextHeight(Scale) / 2), label, Ink, Scale);
        }

        for (double x = xLo; x <= xHi + (xStep / 2); x += xStep)
        {
            int px = (int)Math.Round(Px(x));
            canvas.FillRectangle(px, y0, 1, y1 - y0, Grid);
            string label = Format(x, xStep);
            canvas.DrawText(px - (Canvas.TextWidth(label, Scale) / 2), y1 + 8, label, Ink, Scale);
        }

        canvas.DrawRectangle(x0, y0, x1 - x0 + 1, y1 - y0 + 1, Frame);
        canvas.DrawText(x0 + ((x1 - x0 - Canvas.TextWidth(panel.XLabel, Scale)) / 2), y1 + 34, panel.XLabel, Ink, Scale);
        canvas.DrawText(left + 10, y0 + ((y1 - y0 - Canvas.TextWidth(panel.YLabel, Scale)) / 2), panel.YLabel, Ink, Scale, vertical: true);

        // The series, clipped to the plot area.
        canvas.Clip((x0 + 1, y0 + 1, x1, y1));
        foreach (Series s in panel.Series)
        {
            for (int i = 1; i < s.Points.Count; i++)
            {
                (double ax, double ay) = s.Points[i - 1];
                (double bx, double by) = s.Points[i];
                if (s.Dashed)
                {
                    canvas.DrawDashedLine(Px(ax), Py(ay), Px(bx), Py(by), s.Color, 2, 8);
                }
                else
                {
                    canvas.DrawLine(Px(ax), Py(ay), Px(bx), Py(by), s.Color, 2.5);
                }
            }
        }

        canvas.Clip(null);
    }

    /// <summary>A range covering [min, max] with about five ticks at 1, 2 or 5 × 10^k.</summary>
    private static (double Low, double High, double Step) NiceRange(double min, double max)
    {
        if (!(max > min))
        {
            max = min + 1;
        }

        double raw = (max - min) / 5;
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = magnitude * (raw / magnitude < 1.5 ? 1 : raw / magnitude < 3.5 ? 2 : raw / magnitude < 7.5 ? 5 : 10);
        return (Math.Floor(min / step) * step, Math.Ceiling(max / step) * step, step);
    }

    private static string Format(double value, double step)
    {
        int decimals = Math.Max(0, -(int)Math.Floor(Math.Log10(step) + 1e-9));
        return Math.Round(value, decimals).ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }
}
