"""Figures and tables: the workbook's figure style and saving, the plots of each concern."""
